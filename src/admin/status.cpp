#include "sluice/admin/status.hpp"

#include <algorithm>
#include <optional>

#include <boost/json.hpp>

namespace sluice::admin {

namespace json = boost::json;

namespace {

constexpr const char* class_names[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

const char* to_string(config::policy_kind p) {
  switch (p) {
    case config::policy_kind::round_robin: return "round_robin";
    case config::policy_kind::least_conn: return "least_conn";
    case config::policy_kind::random: return "random";
    case config::policy_kind::p2c: return "p2c";
    case config::policy_kind::ring_hash: return "ring_hash";
    default: return "other";
  }
}

const char* to_string(config::upstream_protocol p) {
  switch (p) {
    case config::upstream_protocol::http1: return "http1";
    case config::upstream_protocol::h2c: return "h2c";
    case config::upstream_protocol::h2: return "h2";
    default: return "other";
  }
}

const char* to_string(config::health_check::kind k) {
  switch (k) {
    case config::health_check::kind::none: return "none";
    case config::health_check::kind::tcp: return "tcp";
    case config::health_check::kind::http: return "http";
    case config::health_check::kind::grpc: return "grpc";
    default: return "other";
  }
}

// The ready set as sorted pointers: membership tests stay O(log n) for large clusters.
std::vector<const core::backend*> ready_of(const pool::snapshot& snap) {
  std::vector<const core::backend*> out;
  out.reserve(snap.ready.size());
  for (const auto& b : snap.ready) out.push_back(b.get());
  std::sort(out.begin(), out.end());
  return out;
}

json::object classes(const std::array<std::uint64_t, 5>& r) {
  json::object o;
  for (std::size_t i = 0; i < 5; ++i) o[class_names[i]] = r[i];
  return o;
}

json::object listener_json(const config::listener& l, std::size_t index,
                           const status_inputs& in) {
  json::object o;
  o["name"] = l.name;
  o["address"] = l.address;
  o["protocol"] = l.protocol == config::listener::protocol_kind::tcp ? "tcp" : "http";
  if (index < in.listener_ports.size()) o["port"] = in.listener_ports[index];
  if (l.protocol == config::listener::protocol_kind::tcp) {
    o["cluster"] = l.cluster;
  } else {
    json::array routes;
    for (const auto& r : l.routes) {
      json::object ro;
      ro["host"] = r.match.host;
      ro["path_prefix"] = r.match.path_prefix;
      if (r.direct)
        ro["direct"] = r.direct->status;
      else
        ro["cluster"] = r.cluster;
      routes.push_back(std::move(ro));
    }
    o["routes"] = std::move(routes);
  }
  if (index < in.listener_slots.size()) index = in.listener_slots[index];
  if (in.metrics && index < in.metrics->shape().listeners.size()) {
    const auto t = in.metrics->listener(index);
    o["connections_active"] = t.active;
    o["connections_accepted"] = t.accepted;
    o["requests"] = classes(t.responses);
    o["received_bytes"] = t.bytes_in;
    o["sent_bytes"] = t.bytes_out;
    if (const auto tcp = in.metrics->tcp_counters(index)) {
      json::object closed;
      for (unsigned k = 0; k < metrics::tcp_close_reasons; ++k) {
        const auto reason = static_cast<metrics::tcp_close_reason>(k);
        closed[metrics::to_string(reason)] = tcp->closed_by(reason);
      }
      o["upstream_connect_failures_total"] = tcp->connect_failures.load(std::memory_order_relaxed);
      o["closed"] = std::move(closed);
    }
  }
  return o;
}

json::object backend_json(const core::backend& b, bool ready, const status_inputs& in) {
  constexpr auto r = std::memory_order_relaxed;
  const auto& h = b.health();
  const auto& st = b.stats();
  json::object o;
  o["address"] = b.name();
  o["weight"] = b.weight();
  o["state"] = core::to_string(b.state());
  o["ready"] = ready;
  o["draining"] = h.draining.load(r);
  o["ejected"] = h.ejected.load(r);
  o["checked_healthy"] = h.checked_healthy.load(r);
  o["active_requests"] = b.active();
  json::object check;
  check["last"] = core::to_string(h.last_check.load(r));
  if (auto s = h.last_check_status.load(r)) check["status"] = s;
  check["at_ms"] = h.last_check_ms.load(r);
  check["passed"] = h.checks_passed.load(r);
  check["failed"] = h.checks_failed.load(r);
  o["health_check"] = std::move(check);
  o["ejections"] = h.ejections.load(r);
  const auto t = metrics::registry::backend(b);
  std::uint64_t answered = 0;
  for (auto n : t.responses) answered += n;
  o["requests_total"] = answered;
  o["responses"] = classes(t.responses);
  o["upstream_requests_total"] = st.requests.load(r);
  const auto connect_failures = st.connect_failures.load(r);
  const auto failures = st.failures.load(r);
  o["connect_failures_total"] = connect_failures;
  o["failures_total"] = failures;
  // What the status page turns into an error rate: answers that were 5xx plus exchanges that
  // never produced an answer from this backend.
  o["errors_total"] = t.responses[4] + connect_failures + failures;
  (void)in;
  return o;
}

json::object cluster_json(const pool::cluster& c, std::size_t index, const status_inputs& in) {
  if (c.metrics_slot() != pool::cluster::no_slot) index = c.metrics_slot();
  const auto& cfg = c.config();
  const auto snap = c.current();
  json::object o;
  o["name"] = c.name();
  o["policy"] = to_string(cfg.policy);
  o["protocol"] = to_string(cfg.protocol);
  o["health_check"] = to_string(cfg.health.type);
  json::object disc;
  disc["source"] = cfg.discovery ? "etcd" : "static";
  if (in.metrics) {
    std::optional<metrics::discovery_sample> sample;
    try {
      sample = in.metrics->discovery_source(index);
    } catch (...) {  // a failing probe leaves the source's figures out
    }
    disc["state"] = metrics::to_string(sample ? sample->state : in.metrics->discovery(index));
    const auto age = sample ? sample->last_event_age : in.metrics->discovery_event_age(index);
    if (age)
      disc["last_event_age_seconds"] = *age;
    else
      disc["last_event_age_seconds"] = nullptr;
    if (sample) {
      disc["connected"] = sample->connected;
      disc["revision"] = sample->revision;
      disc["endpoints"] = sample->endpoints;
      disc["updates_total"] = sample->updates;
      disc["disconnects_total"] = sample->disconnects;
      disc["full_reads_total"] = sample->full_reads;
      disc["invalid_entries_total"] = sample->skipped;
    }
  }
  o["discovery"] = std::move(disc);
  o["snapshot_version"] = snap->version;
  o["panic"] = snap->panic;
  o["ready_count"] = snap->ready.size();
  std::uint64_t active = 0;
  json::array backends;
  const auto ready_set = ready_of(*snap);
  for (const auto& b : snap->backends) {
    if (!b) continue;
    const bool ready = std::binary_search(ready_set.begin(), ready_set.end(), b.get());
    active += b->active();
    backends.push_back(backend_json(*b, ready, in));
  }
  o["active_requests"] = active;
  o["backends"] = std::move(backends);
  if (in.metrics && index < in.metrics->shape().clusters.size()) {
    const auto t = in.metrics->cluster(index);
    o["requests"] = classes(t.responses);
    o["retries_total"] = t.retries;
    o["connect_failures_total"] = t.connect_failures;
  }
  return o;
}

}  // namespace

json::value status(const status_inputs& in) {
  json::object doc;
  doc["version"] = SLUICE_VERSION;
  const auto now = std::chrono::system_clock::now();
  doc["started"] = std::chrono::duration<double>(in.started.time_since_epoch()).count();
  doc["uptime_seconds"] = std::chrono::duration<double>(now - in.started).count();
  doc["draining"] = in.draining;
  json::object conf;
  conf["file"] = in.cfg ? in.cfg->file : "";
  conf["version"] = in.metrics ? in.metrics->config_version() : 1;
  doc["config"] = std::move(conf);
  if (in.metrics) {
    doc["workers"] = in.metrics->workers();
    doc["metrics_enabled"] = in.metrics->enabled();
  }
  json::array listeners;
  if (in.cfg)
    for (std::size_t i = 0; i < in.cfg->listeners.size(); ++i)
      listeners.push_back(listener_json(in.cfg->listeners[i], i, in));
  doc["listeners"] = std::move(listeners);
  json::array clusters;
  std::uint64_t active = 0;
  for (std::size_t i = 0; i < in.clusters.size(); ++i) {
    if (!in.clusters[i]) continue;
    auto c = cluster_json(*in.clusters[i], i, in);
    active += c["active_requests"].as_uint64();
    clusters.push_back(std::move(c));
  }
  doc["active_requests"] = active;
  doc["clusters"] = std::move(clusters);
  return doc;
}

metrics::backend_enumerator backend_enumerator(
    std::vector<std::shared_ptr<pool::cluster>> clusters) {
  return [clusters = std::move(clusters)](const metrics::backend_visitor& visit) {
    for (std::size_t i = 0; i < clusters.size(); ++i) {
      if (!clusters[i]) continue;
      const auto snap = clusters[i]->current();
      const auto ready_set = ready_of(*snap);
      for (const auto& b : snap->backends) {
        if (!b) continue;
        const bool ready = std::binary_search(ready_set.begin(), ready_set.end(), b.get());
        const auto slot = clusters[i]->metrics_slot();
        visit({slot == pool::cluster::no_slot ? i : slot, b.get(), ready});
      }
    }
  };
}

}  // namespace sluice::admin
