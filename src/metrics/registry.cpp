#include "sluice/metrics/registry.hpp"

#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

namespace sluice::metrics {

namespace {

constexpr const char* class_names[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

std::int64_t steady_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Small builder that keeps the collector readable.
struct family_builder {
  MetricFamily f;
  family_builder(std::string name, std::string help, MetricType type) {
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
  }
  ClientMetric& add(std::vector<ClientMetric::Label> labels) {
    f.metric.emplace_back();
    f.metric.back().label = std::move(labels);
    return f.metric.back();
  }
  void value(std::vector<ClientMetric::Label> labels, double v) {
    auto& m = add(std::move(labels));
    if (f.type == MetricType::Counter)
      m.counter.value = v;
    else
      m.gauge.value = v;
  }
  void histogram(std::vector<ClientMetric::Label> labels, const core::histogram_totals& h) {
    auto& m = add(std::move(labels));
    m.histogram = to_client_histogram(h);
  }
  static ClientMetric::Histogram to_client_histogram(const core::histogram_totals& h) {
    ClientMetric::Histogram out;
    std::uint64_t cumulative = 0;
    out.bucket.reserve(core::latency_bounds_ns.size());
    for (std::size_t i = 0; i < core::latency_bounds_ns.size(); ++i) {
      cumulative += h.buckets[i];
      out.bucket.push_back({cumulative, static_cast<double>(core::latency_bounds_ns[i]) / 1e9});
    }
    // The serializer adds the +Inf bucket with sample_count; count includes the +Inf bucket.
    out.sample_count = cumulative + h.buckets.back();
    out.sample_sum = static_cast<double>(h.sum_ns) / 1e9;
    return out;
  }
};

}  // namespace

std::string_view to_string(discovery_state s) noexcept {
  switch (s) {
    case discovery_state::static_config: return "static";
    case discovery_state::connecting: return "connecting";
    case discovery_state::watching: return "watching";
    case discovery_state::error: return "error";
  }
  return "static";
}

struct registry::reload_metrics {
  prometheus::Family<prometheus::Counter>& reloads;
  prometheus::Counter& success;
  prometheus::Counter& failure;
  prometheus::Gauge& last_success;
  prometheus::Gauge& last_time;

  explicit reload_metrics(prometheus::Registry& r)
      : reloads(prometheus::BuildCounter()
                    .Name("sluice_config_reloads_total")
                    .Help("Configuration reloads attempted, by result.")
                    .Register(r)),
        success(reloads.Add({{"result", "success"}})),
        failure(reloads.Add({{"result", "failure"}})),
        last_success(prometheus::BuildGauge()
                         .Name("sluice_config_last_reload_successful")
                         .Help("1 if the last configuration reload (or the initial load) succeeded, else 0.")
                         .Register(r)
                         .Add({})),
        last_time(prometheus::BuildGauge()
                      .Name("sluice_config_last_reload_timestamp_seconds")
                      .Help("Unix time of the last configuration load or reload attempt.")
                      .Register(r)
                      .Add({})) {}
};

// Merges the shards, the per-backend atomics and the control-plane state at scrape time.
class registry::collector : public prometheus::Collectable {
 public:
  explicit collector(const registry& r) : r_(r) {}

  void set_backends(backend_enumerator e) {
    std::lock_guard lock(mutex_);
    backends_ = std::move(e);
  }

  std::vector<MetricFamily> Collect() const override {
    // The names are copied first: slots may be added while the counters are read.
    view v;
    v.names = r_.exported();
    for (const auto& [i, name] : v.names.clusters) v.cluster_names.emplace(i, name);
    std::vector<MetricFamily> out;
    collect_process(out);
    collect_listeners(out, v);
    collect_tcp(out, v);
    collect_clusters(out, v);
    collect_routes(out, v);
    collect_backends(out, v);
    collect_discovery(out, v);
    return out;
  }

 private:
  struct view {
    exported_names names;
    std::map<std::size_t, std::string> cluster_names;  ///< exported clusters by slot
  };

  void collect_process(std::vector<MetricFamily>& out) const {
    family_builder info("sluice_build_info", "Build information; always 1.", MetricType::Gauge);
    info.value({{"version", SLUICE_VERSION}}, 1);
    out.push_back(std::move(info.f));
    family_builder start("sluice_start_time_seconds", "Unix time the process started.",
                         MetricType::Gauge);
    start.value({}, std::chrono::duration<double>(r_.started_.time_since_epoch()).count());
    out.push_back(std::move(start.f));
    family_builder workers("sluice_workers", "Worker threads.", MetricType::Gauge);
    workers.value({}, r_.workers());
    out.push_back(std::move(workers.f));
    family_builder enabled("sluice_metrics_enabled",
                           "1 if request metrics are counted (config metrics.enabled).",
                           MetricType::Gauge);
    enabled.value({}, r_.enabled() ? 1 : 0);
    out.push_back(std::move(enabled.f));
  }

  void collect_listeners(std::vector<MetricFamily>& out, const view& v) const {
    family_builder accepted("sluice_downstream_connections_accepted_total",
                            "Downstream connections accepted.", MetricType::Counter);
    family_builder active("sluice_downstream_connections_active",
                          "Downstream connections open now.", MetricType::Gauge);
    family_builder requests("sluice_downstream_requests_total",
                            "Downstream requests answered, by status class.",
                            MetricType::Counter);
    family_builder in("sluice_downstream_received_bytes_total",
                      "Bytes received from downstream clients.", MetricType::Counter);
    family_builder sent("sluice_downstream_sent_bytes_total", "Bytes sent to downstream clients.",
                        MetricType::Counter);
    for (const auto& [i, name] : v.names.listeners) {
      const auto t = r_.listener(i);
      accepted.value({{"listener", name}}, static_cast<double>(t.accepted));
      active.value({{"listener", name}}, static_cast<double>(t.active));
      if (!r_.tcp_counters(i))  // a TCP listener answers no requests
        for (std::size_t c = 0; c < 5; ++c)
          requests.value({{"code", class_names[c]}, {"listener", name}},
                         static_cast<double>(t.responses[c]));
      in.value({{"listener", name}}, static_cast<double>(t.bytes_in));
      sent.value({{"listener", name}}, static_cast<double>(t.bytes_out));
    }
    for (auto* f : {&accepted, &active, &requests, &in, &sent}) out.push_back(std::move(f->f));
  }

  // TCP listeners' rare events (shared counters); their bytes and connections are in the
  // downstream families above.
  void collect_tcp(std::vector<MetricFamily>& out, const view& v) const {
    family_builder connect("sluice_tcp_upstream_connect_failures_total",
                           "Failed upstream connect attempts of a TCP listener's sessions.",
                           MetricType::Counter);
    family_builder closed("sluice_tcp_connections_closed_total",
                          "TCP sessions ended by sluice before or instead of a normal close, by "
                          "reason.",
                          MetricType::Counter);
    for (const auto& [i, name] : v.names.listeners) {
      const auto t = r_.tcp_counters(i);
      if (!t) continue;
      connect.value({{"listener", name}},
                    static_cast<double>(t->connect_failures.load(std::memory_order_relaxed)));
      for (unsigned k = 0; k < tcp_close_reasons; ++k) {
        const auto reason = static_cast<tcp_close_reason>(k);
        closed.value({{"listener", name}, {"reason", to_string(reason)}},
                     static_cast<double>(t->closed_by(reason)));
      }
    }
    if (connect.f.metric.empty()) return;
    out.push_back(std::move(connect.f));
    out.push_back(std::move(closed.f));
  }

  void collect_clusters(std::vector<MetricFamily>& out, const view& v) const {
    family_builder requests("sluice_cluster_requests_total",
                            "Requests routed to the cluster, by status class sent downstream.",
                            MetricType::Counter);
    family_builder duration("sluice_cluster_request_duration_seconds",
                            "Duration of requests routed to the cluster, as the downstream saw it.",
                            MetricType::Histogram);
    family_builder upstream("sluice_cluster_upstream_duration_seconds",
                            "Upstream time of the answering attempt (connect or reuse, send, receive).",
                            MetricType::Histogram);
    family_builder connect("sluice_cluster_upstream_connect_failures_total",
                           "Failed TCP connects to the cluster's backends.", MetricType::Counter);
    family_builder retries("sluice_cluster_retries_total",
                           "Requests tried again on another backend.", MetricType::Counter);
    for (const auto& [i, name] : v.names.clusters) {
      const auto t = r_.cluster(i);
      for (std::size_t c = 0; c < 5; ++c)
        requests.value({{"cluster", name}, {"code", class_names[c]}},
                       static_cast<double>(t.responses[c]));
      duration.histogram({{"cluster", name}}, t.request);
      upstream.histogram({{"cluster", name}}, t.upstream);
      connect.value({{"cluster", name}}, static_cast<double>(t.connect_failures));
      retries.value({{"cluster", name}}, static_cast<double>(t.retries));
    }
    for (auto* f : {&requests, &duration, &upstream, &connect, &retries})
      out.push_back(std::move(f->f));
  }

  // Per configured route of the http listeners (labels bounded by the configuration).
  void collect_routes(std::vector<MetricFamily>& out, const view& v) const {
    if (v.names.routes.empty()) return;
    family_builder requests("sluice_route_requests_total",
                            "Requests that matched the route, by status class sent downstream.",
                            MetricType::Counter);
    family_builder duration("sluice_route_request_duration_seconds",
                            "Duration of requests that matched the route, as the downstream saw it.",
                            MetricType::Histogram);
    for (const auto& [i, name] : v.names.routes) {
      const auto t = r_.route(i);
      for (std::size_t c = 0; c < 5; ++c)
        requests.value({{"code", class_names[c]}, {"listener", name.listener}, {"route", name.route}},
                       static_cast<double>(t.responses[c]));
      duration.histogram({{"listener", name.listener}, {"route", name.route}}, t.request);
    }
    out.push_back(std::move(requests.f));
    out.push_back(std::move(duration.f));
  }

  // One series per (cluster, backend address): a cluster may list one address twice (each
  // gets its own backend object); their samples are merged so no series appears twice.
  struct backend_row {
    backend_totals totals;
    std::uint64_t active = 0, upstream_requests = 0, connect_failures = 0, failures = 0;
    std::uint64_t ejections = 0, checks_passed = 0, checks_failed = 0, bytes_sent = 0;
    std::uint64_t bytes_received = 0, weight = 0;
    core::health_state health = core::health_state::healthy;
    bool ready = false;
  };

  void collect_backends(std::vector<MetricFamily>& out, const view& v) const {
    constexpr auto r = std::memory_order_relaxed;
    std::map<std::pair<std::size_t, std::string>, backend_row> rows;
    {
      std::lock_guard lock(mutex_);
      if (backends_) {
        backends_([&](const backend_sample& s) {
          if (!s.backend || !v.cluster_names.count(s.cluster)) return;
          const auto [it, first] = rows.try_emplace({s.cluster, s.backend->name()});
          auto& row = it->second;
          const auto t = registry::backend(*s.backend);
          for (std::size_t c = 0; c < 5; ++c) row.totals.responses[c] += t.responses[c];
          row.totals.request.add(t.request);
          row.totals.upstream.add(t.upstream);
          const auto& st = s.backend->stats();
          const auto& h = s.backend->health();
          row.active += s.backend->active();
          row.upstream_requests += st.requests.load(r);
          row.connect_failures += st.connect_failures.load(r);
          row.failures += st.failures.load(r);
          row.bytes_sent += st.bytes_sent.load(r);
          row.bytes_received += st.bytes_received.load(r);
          row.ejections += h.ejections.load(r);
          row.checks_passed += h.checks_passed.load(r);
          row.checks_failed += h.checks_failed.load(r);
          row.weight += s.backend->weight();
          // A duplicate address: the more severe state wins (the enum is ordered that way).
          const auto state = s.backend->state();
          if (first || state < row.health) row.health = state;
          row.ready = row.ready || s.ready;
        });
      }
    }
    family_builder requests("sluice_backend_requests_total",
                            "Requests answered by the backend, by status class sent downstream.",
                            MetricType::Counter);
    family_builder duration("sluice_backend_request_duration_seconds",
                            "Duration of requests the backend answered, as the downstream saw it.",
                            MetricType::Histogram);
    family_builder upstream("sluice_backend_upstream_duration_seconds",
                            "Upstream time of the answering attempt (connect or reuse, send, receive).",
                            MetricType::Histogram);
    family_builder sent_to("sluice_backend_upstream_requests_total",
                           "Requests (HTTP) or connections (TCP) sent to the backend, retries "
                           "included.",
                           MetricType::Counter);
    family_builder active("sluice_backend_active_requests",
                          "Requests (or TCP connections) in flight to the backend.",
                          MetricType::Gauge);
    family_builder connect("sluice_backend_connect_failures_total",
                           "Failed TCP connects to the backend.", MetricType::Counter);
    family_builder failures("sluice_backend_failures_total",
                            "Exchanges with the backend that failed after connecting (reset, "
                            "timeout, bad response).",
                            MetricType::Counter);
    family_builder bytes_out("sluice_backend_sent_bytes_total",
                             "Bytes relayed to the backend (TCP listeners).", MetricType::Counter);
    family_builder bytes_in("sluice_backend_received_bytes_total",
                            "Bytes relayed from the backend (TCP listeners).", MetricType::Counter);
    family_builder health("sluice_backend_health",
                          "Health state of the backend (draining > ejected > unhealthy > "
                          "healthy); 1 for the current state.",
                          MetricType::Gauge);
    family_builder ready("sluice_backend_ready",
                         "1 if the backend is in the set the balancing policy picks from.",
                         MetricType::Gauge);
    family_builder ejections("sluice_backend_ejections_total",
                             "Times passive health checking ejected the backend.",
                             MetricType::Counter);
    family_builder checks("sluice_backend_health_checks_total",
                          "Active health checks of the backend, by result.", MetricType::Counter);
    family_builder weight("sluice_backend_weight", "Configured weight of the backend.",
                          MetricType::Gauge);
    for (const auto& [key, row] : rows) {
      const std::string& cluster = v.cluster_names.at(key.first);
      const std::string& addr = key.second;
      auto labels = [&] {
        return std::vector<ClientMetric::Label>{{"backend", addr}, {"cluster", cluster}};
      };
      auto labels_with = [&](const char* name, std::string value) {
        auto l = labels();
        l.push_back({name, std::move(value)});
        return l;
      };
      for (std::size_t c = 0; c < 5; ++c)
        requests.value(labels_with("code", class_names[c]),
                       static_cast<double>(row.totals.responses[c]));
      duration.histogram(labels(), row.totals.request);
      upstream.histogram(labels(), row.totals.upstream);
      sent_to.value(labels(), static_cast<double>(row.upstream_requests));
      active.value(labels(), static_cast<double>(row.active));
      connect.value(labels(), static_cast<double>(row.connect_failures));
      failures.value(labels(), static_cast<double>(row.failures));
      bytes_out.value(labels(), static_cast<double>(row.bytes_sent));
      bytes_in.value(labels(), static_cast<double>(row.bytes_received));
      for (auto s : {core::health_state::healthy, core::health_state::unhealthy,
                     core::health_state::ejected, core::health_state::draining})
        health.value(labels_with("state", core::to_string(s)), row.health == s ? 1 : 0);
      ready.value(labels(), row.ready ? 1 : 0);
      ejections.value(labels(), static_cast<double>(row.ejections));
      checks.value(labels_with("result", "passed"), static_cast<double>(row.checks_passed));
      checks.value(labels_with("result", "failed"), static_cast<double>(row.checks_failed));
      weight.value(labels(), static_cast<double>(row.weight));
    }
    for (auto* f : {&requests, &duration, &upstream, &sent_to, &active, &connect, &failures,
                    &bytes_out, &bytes_in, &health, &ready, &ejections, &checks, &weight})
      out.push_back(std::move(f->f));
  }

  void collect_discovery(std::vector<MetricFamily>& out, const view& v) const {
    family_builder state("sluice_discovery_state",
                         "State of the cluster's discovery source; 1 for the current state.",
                         MetricType::Gauge);
    family_builder age("sluice_discovery_last_event_age_seconds",
                       "Seconds since the cluster's discovery source last delivered an update.",
                       MetricType::Gauge);
    family_builder invalid("sluice_discovery_invalid_entries_total",
                           "Discovered entries skipped because their value was unusable.",
                           MetricType::Counter);
    // Only for clusters with a discovery source.
    family_builder connected("sluice_discovery_connected",
                             "1 while the cluster's discovery source has a watch established.",
                             MetricType::Gauge);
    family_builder revision("sluice_discovery_revision",
                            "Store revision the cluster's discovered endpoint set reflects.",
                            MetricType::Gauge);
    family_builder endpoints("sluice_discovery_endpoints",
                             "Endpoints in the set the discovery source last delivered (static "
                             "ones included).",
                             MetricType::Gauge);
    family_builder updates("sluice_discovery_updates_total",
                           "Endpoint sets the discovery source delivered to the cluster.",
                           MetricType::Counter);
    family_builder disconnects("sluice_discovery_disconnects_total",
                               "Discovery sessions lost or failed to establish.",
                               MetricType::Counter);
    family_builder full_reads("sluice_discovery_full_reads_total",
                              "Whole-prefix reads (start, reconnect after compaction or a "
                              "cancelled watch).",
                              MetricType::Counter);
    for (const auto& [i, name] : v.names.clusters) {
      std::optional<discovery_sample> sample;
      bool failed = false;
      try {
        sample = r_.discovery_source(i);
      } catch (...) {  // a probe that throws reads as an error, never takes the scrape down
        failed = true;
      }
      const auto current = sample ? sample->state
                                  : failed ? discovery_state::error : r_.discovery(i);
      for (auto s : {discovery_state::static_config, discovery_state::connecting,
                     discovery_state::watching, discovery_state::error})
        state.value({{"cluster", name}, {"state", std::string(to_string(s))}},
                    current == s ? 1 : 0);
      const auto event_age =
          sample ? sample->last_event_age : failed ? std::nullopt : r_.discovery_event_age(i);
      if (event_age) age.value({{"cluster", name}}, *event_age);
      const auto* slot = r_.discovery_.find(i);
      const auto skipped =
          sample ? sample->skipped : slot ? slot->invalid.load(std::memory_order_relaxed) : 0;
      invalid.value({{"cluster", name}}, static_cast<double>(skipped));
      if (!sample) continue;
      connected.value({{"cluster", name}}, sample->connected ? 1 : 0);
      revision.value({{"cluster", name}}, static_cast<double>(sample->revision));
      endpoints.value({{"cluster", name}}, static_cast<double>(sample->endpoints));
      updates.value({{"cluster", name}}, static_cast<double>(sample->updates));
      disconnects.value({{"cluster", name}}, static_cast<double>(sample->disconnects));
      full_reads.value({{"cluster", name}}, static_cast<double>(sample->full_reads));
    }
    out.push_back(std::move(state.f));
    if (!age.f.metric.empty()) out.push_back(std::move(age.f));
    out.push_back(std::move(invalid.f));
    if (connected.f.metric.empty()) return;
    for (auto* f : {&connected, &revision, &endpoints, &updates, &disconnects, &full_reads})
      out.push_back(std::move(f->f));
  }

  const registry& r_;
  mutable std::mutex mutex_;
  backend_enumerator backends_;
};

registry::registry(layout l)
    : enabled_(l.enabled),
      prom_(std::make_shared<prometheus::Registry>()),
      started_(std::chrono::system_clock::now()) {
  const unsigned n = l.workers == 0 ? 1 : l.workers;
  shards_.reserve(n);
  for (unsigned w = 0; w < n; ++w)
    shards_.push_back(std::make_unique<worker_shard>(w, 0, 0, enabled_));
  {
    std::lock_guard lock(names_mutex_);
    // Config order: slot i is the i-th name (a name listed twice keeps its first slot).
    for (const auto& name : l.listeners) slot_of(listeners_, name);
    for (const auto& name : l.clusters) slot_of(clusters_, name);
    for (const auto& r : l.routes) slot_of(routes_, r);
    grow_locked();
  }
  collector_ = std::make_unique<collector>(*this);
  reload_ = std::make_unique<reload_metrics>(*prom_);
  reload_->last_success.Set(1);
  reload_->last_time.Set(std::chrono::duration<double>(started_.time_since_epoch()).count());
}

registry::~registry() = default;

template <class Key, class Find>
std::size_t registry::slot_of(name_table<Key>& t, const Find& key) {
  if (auto it = t.slots.find(key); it != t.slots.end()) return it->second;
  const std::size_t slot = t.names.size();
  t.names.push_back(Key(key));
  t.exported.push_back(true);
  t.slots.emplace(t.names.back(), slot);
  return slot;
}

// Makes every slot named so far exist everywhere, before the caller can hand it to a worker.
void registry::grow_locked() {
  for (auto& s : shards_) s->grow(listeners_.names.size(), clusters_.names.size(), routes_.names.size());
  discovery_.grow(clusters_.names.size());
  std::lock_guard lock(sources_mutex_);
  if (probes_.size() < clusters_.names.size()) probes_.resize(clusters_.names.size());
  if (tcp_.size() < listeners_.names.size()) tcp_.resize(listeners_.names.size());
}

std::size_t registry::listener_slot(std::string_view name) {
  std::lock_guard lock(names_mutex_);
  const auto slot = slot_of(listeners_, std::string(name));
  grow_locked();
  return slot;
}

std::size_t registry::cluster_slot(std::string_view name) {
  std::lock_guard lock(names_mutex_);
  const auto slot = slot_of(clusters_, std::string(name));
  grow_locked();
  return slot;
}

std::size_t registry::route_slot(std::string_view listener, std::string_view route) {
  std::lock_guard lock(names_mutex_);
  const auto slot = slot_of(routes_, route_name{std::string(listener), std::string(route)});
  grow_locked();
  return slot;
}

void registry::retain(const layout& current) {
  std::lock_guard lock(names_mutex_);
  // Names new to the registry are exported by slot_of; the flags below decide for all.
  std::vector<bool> listeners(listeners_.names.size() + current.listeners.size());
  std::vector<bool> clusters(clusters_.names.size() + current.clusters.size());
  std::vector<bool> routes(routes_.names.size() + current.routes.size());
  for (const auto& name : current.listeners) listeners[slot_of(listeners_, name)] = true;
  for (const auto& name : current.clusters) clusters[slot_of(clusters_, name)] = true;
  for (const auto& r : current.routes) routes[slot_of(routes_, r)] = true;
  grow_locked();
  for (std::size_t i = 0; i < listeners_.names.size(); ++i) listeners_.exported[i] = listeners[i];
  for (std::size_t i = 0; i < routes_.names.size(); ++i) routes_.exported[i] = routes[i];
  std::vector<discovery_probe> dropped;  // destroyed outside the lock
  {
    std::lock_guard sources(sources_mutex_);
    for (std::size_t i = 0; i < clusters_.names.size(); ++i) {
      clusters_.exported[i] = clusters[i];
      if (!clusters[i] && probes_[i]) {
        dropped.push_back(std::move(probes_[i]));
        probes_[i] = nullptr;
      }
    }
  }
}

registry::exported_names registry::exported() const {
  exported_names out;
  std::lock_guard lock(names_mutex_);
  for (std::size_t i = 0; i < listeners_.names.size(); ++i)
    if (listeners_.exported[i]) out.listeners.emplace_back(i, listeners_.names[i]);
  for (std::size_t i = 0; i < clusters_.names.size(); ++i)
    if (clusters_.exported[i]) out.clusters.emplace_back(i, clusters_.names[i]);
  for (std::size_t i = 0; i < routes_.names.size(); ++i)
    if (routes_.exported[i]) out.routes.emplace_back(i, routes_.names[i]);
  return out;
}

layout registry::shape() const {
  layout out;
  out.workers = workers();
  out.enabled = enabled_;
  std::lock_guard lock(names_mutex_);
  out.listeners = listeners_.names;
  out.clusters = clusters_.names;
  out.routes = routes_.names;
  return out;
}

void registry::set_backends(backend_enumerator e) { collector_->set_backends(std::move(e)); }

std::shared_ptr<tcp_listener_counters> registry::tcp_listener(std::size_t listener) {
  std::lock_guard lock(sources_mutex_);
  if (listener >= tcp_.size()) return nullptr;
  if (!tcp_[listener]) tcp_[listener] = std::make_shared<tcp_listener_counters>();
  return tcp_[listener];
}

void registry::forget_tcp_listener(std::size_t listener) {
  std::lock_guard lock(sources_mutex_);
  if (listener < tcp_.size()) tcp_[listener] = nullptr;
}

std::shared_ptr<const tcp_listener_counters> registry::tcp_counters(std::size_t listener) const {
  std::lock_guard lock(sources_mutex_);
  return listener < tcp_.size() ? tcp_[listener] : nullptr;
}

void registry::set_discovery_source(std::size_t cluster, discovery_probe probe) {
  discovery_probe old;  // destroyed outside the lock
  std::lock_guard lock(sources_mutex_);
  if (cluster < probes_.size()) {
    old = std::move(probes_[cluster]);
    probes_[cluster] = std::move(probe);
  }
}

std::optional<discovery_sample> registry::discovery_source(std::size_t cluster) const {
  std::lock_guard lock(sources_mutex_);
  if (cluster >= probes_.size() || !probes_[cluster]) return std::nullopt;
  return probes_[cluster]();
}

void registry::set_discovery_state(std::size_t cluster, discovery_state s) noexcept {
  if (auto* d = discovery_.find(cluster)) d->state.store(static_cast<int>(s), std::memory_order_relaxed);
}

void registry::on_discovery_event(std::size_t cluster) noexcept {
  if (auto* d = discovery_.find(cluster))
    d->last_event_ns.store(steady_now_ns(), std::memory_order_relaxed);
}

void registry::on_discovery_invalid_entry(std::size_t cluster) noexcept {
  if (auto* d = discovery_.find(cluster)) d->invalid.fetch_add(1, std::memory_order_relaxed);
}

discovery_state registry::discovery(std::size_t cluster) const noexcept {
  const auto* d = discovery_.find(cluster);
  if (!d) return discovery_state::static_config;
  try {
    if (auto s = discovery_source(cluster)) return s->state;
  } catch (...) {  // a probe that throws reads as an error, never takes the scrape down
    return discovery_state::error;
  }
  return static_cast<discovery_state>(d->state.load(std::memory_order_relaxed));
}

std::optional<double> registry::discovery_event_age(std::size_t cluster) const noexcept {
  const auto* d = discovery_.find(cluster);
  if (!d) return std::nullopt;
  try {
    if (auto s = discovery_source(cluster)) return s->last_event_age;
  } catch (...) {
    return std::nullopt;
  }
  const auto t = d->last_event_ns.load(std::memory_order_relaxed);
  if (t < 0) return std::nullopt;
  const auto age = steady_now_ns() - t;
  return age > 0 ? static_cast<double>(age) / 1e9 : 0.0;
}

void registry::on_config_reload(bool success) {
  (success ? reload_->success : reload_->failure).Increment();
  reload_->last_success.Set(success ? 1 : 0);
  reload_->last_time.Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  if (success) config_version_.fetch_add(1, std::memory_order_relaxed);
}

registry::listener_totals registry::listener(std::size_t i) const {
  listener_totals t;
  std::uint64_t closed = 0;
  for (const auto& s : shards_) {
    if (i >= s->listeners()) continue;
    const auto& l = s->listener(i);
    // Read `closed` before `accepted`: a connection closing between the two loads can make
    // the difference too large by one for a moment, never negative.
    closed += l.closed.load(std::memory_order_relaxed);
    t.accepted += l.accepted.load(std::memory_order_relaxed);
    t.bytes_in += l.bytes_in.load(std::memory_order_relaxed);
    t.bytes_out += l.bytes_out.load(std::memory_order_relaxed);
    for (std::size_t c = 0; c < 5; ++c) t.responses[c] += l.responses[c].load(std::memory_order_relaxed);
  }
  t.active = t.accepted >= closed ? t.accepted - closed : 0;
  return t;
}

registry::cluster_totals registry::cluster(std::size_t i) const {
  cluster_totals t;
  for (const auto& s : shards_) {
    if (i >= s->clusters()) continue;
    const auto& c = s->cluster(i);
    for (std::size_t k = 0; k < 5; ++k) t.responses[k] += c.responses[k].load(std::memory_order_relaxed);
    t.connect_failures += c.connect_failures.load(std::memory_order_relaxed);
    t.retries += c.retries.load(std::memory_order_relaxed);
    t.request.add(c.request);
    t.upstream.add(c.upstream);
  }
  return t;
}

registry::route_totals registry::route(std::size_t i) const {
  route_totals t;
  for (const auto& s : shards_) {
    if (i >= s->routes()) continue;
    const auto& r = s->route(i);
    for (std::size_t k = 0; k < 5; ++k) t.responses[k] += r.responses[k].load(std::memory_order_relaxed);
    t.request.add(r.request);
  }
  return t;
}

registry::backend_totals registry::backend(const core::backend& b) {
  backend_totals t;
  for (unsigned w = 0; w < core::max_workers; ++w) {
    const auto* s = b.worker_stats_if(w);
    if (!s) continue;
    for (std::size_t k = 0; k < 5; ++k) t.responses[k] += s->responses[k].load(std::memory_order_relaxed);
    t.request.add(s->request);
    t.upstream.add(s->upstream);
  }
  return t;
}

std::vector<prometheus::MetricFamily> registry::collect() const {
  auto out = prom_->Collect();
  auto more = collector_->Collect();
  out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  return out;
}

std::string registry::serialize() const {
  std::ostringstream os;
  prometheus::TextSerializer().Serialize(os, collect());
  return os.str();
}

}  // namespace sluice::metrics
