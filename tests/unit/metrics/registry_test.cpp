#include "sluice/metrics/registry.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace sluice;
using namespace std::chrono_literals;

namespace {

metrics::layout two_workers() {
  metrics::layout l;
  l.listeners = {"web", "api"};
  l.clusters = {"main", "other"};
  l.workers = 2;
  return l;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos ||
         text.rfind(line + "\n", 0) == 0;
}

const prometheus::MetricFamily* family(const std::vector<prometheus::MetricFamily>& fs,
                                       const std::string& name) {
  for (const auto& f : fs)
    if (f.name == name) return &f;
  return nullptr;
}

}  // namespace

TEST_CASE("registry merges the worker shards", "[metrics]") {
  metrics::registry r(two_workers());
  REQUIRE(r.workers() == 2);
  r.shard(0).on_connection_open(0);
  r.shard(1).on_connection_open(0);
  r.shard(1).on_connection_open(0);
  r.shard(1).on_connection_close(0);
  r.shard(0).on_request(0, 0, nullptr, 200, 1ms, 500us, 10, 100);
  r.shard(1).on_request(0, 0, nullptr, 503, 20ms, 0ns, 20, 200);
  r.shard(1).on_retry(0);

  auto l = r.listener(0);
  CHECK(l.accepted == 3);
  CHECK(l.active == 2);
  CHECK(l.bytes_in == 30);
  CHECK(l.bytes_out == 300);
  CHECK(l.responses[1] == 1);
  CHECK(l.responses[4] == 1);
  auto c = r.cluster(0);
  CHECK(c.request.count() == 2);
  CHECK(c.upstream.count() == 1);
  CHECK(c.retries == 1);
  CHECK(r.cluster(1).request.count() == 0);
  CHECK_THROWS_AS(r.shard(2), std::out_of_range);
}

TEST_CASE("backend series are merged over workers and duplicate addresses", "[metrics]") {
  metrics::registry r(two_workers());
  auto a = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 2);
  auto dup = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 1);
  auto b = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8002"), 1);
  b->health().draining.store(true);
  r.set_backends([&](const metrics::backend_visitor& visit) {
    visit({0, a.get(), true});
    visit({0, dup.get(), true});
    visit({1, b.get(), false});
    visit({7, b.get(), true});      // unknown cluster: ignored
    visit({0, nullptr, true});      // no backend: ignored
  });
  r.shard(0).on_request(0, 0, a.get(), 200, 1ms, 1ms, 0, 0);
  r.shard(1).on_request(0, 0, a.get(), 200, 1ms, 1ms, 0, 0);
  r.shard(1).on_request(0, 0, dup.get(), 404, 1ms, 1ms, 0, 0);
  a->add_active(2);

  auto fams = r.collect();
  const auto* req = family(fams, "sluice_backend_requests_total");
  REQUIRE(req);
  CHECK(req->metric.size() == 2 * 5);  // two (cluster, address) rows, five classes each
  const auto text = r.serialize();
  CHECK(has_line(text,
                 "sluice_backend_requests_total{backend=\"127.0.0.1:8001\",cluster=\"main\",code=\"2xx\"} 2"));
  CHECK(has_line(text,
                 "sluice_backend_requests_total{backend=\"127.0.0.1:8001\",cluster=\"main\",code=\"4xx\"} 1"));
  CHECK(has_line(text, "sluice_backend_active_requests{backend=\"127.0.0.1:8001\",cluster=\"main\"} 2"));
  CHECK(has_line(text, "sluice_backend_weight{backend=\"127.0.0.1:8001\",cluster=\"main\"} 3"));
  CHECK(has_line(text,
                 "sluice_backend_health{backend=\"127.0.0.1:8002\",cluster=\"other\",state=\"draining\"} 1"));
  CHECK(has_line(text,
                 "sluice_backend_health{backend=\"127.0.0.1:8002\",cluster=\"other\",state=\"healthy\"} 0"));
  CHECK(has_line(text, "sluice_backend_ready{backend=\"127.0.0.1:8002\",cluster=\"other\"} 0"));
  CHECK(has_line(text,
                 "sluice_backend_request_duration_seconds_count{backend=\"127.0.0.1:8001\",cluster=\"main\"} 3"));
}

TEST_CASE("text exposition of histograms is cumulative with +Inf and seconds", "[metrics]") {
  metrics::layout l;
  l.listeners = {"web"};
  l.clusters = {"main"};
  metrics::registry r(l);
  auto& s = r.shard(0);
  s.on_request(0, 0, nullptr, 200, 50us, 0ns, 0, 0);
  s.on_request(0, 0, nullptr, 200, 300us, 0ns, 0, 0);
  s.on_request(0, 0, nullptr, 200, 2min, 0ns, 0, 0);
  const auto text = r.serialize();
  INFO(text);
  CHECK(has_line(text, "# TYPE sluice_cluster_request_duration_seconds histogram"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_bucket{cluster=\"main\",le=\"0.0001\"} 1"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_bucket{cluster=\"main\",le=\"0.00025\"} 1"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_bucket{cluster=\"main\",le=\"0.0005\"} 2"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_bucket{cluster=\"main\",le=\"60\"} 2"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_bucket{cluster=\"main\",le=\"+Inf\"} 3"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_count{cluster=\"main\"} 3"));
  CHECK(has_line(text, "sluice_cluster_request_duration_seconds_sum{cluster=\"main\"} 120.00035"));
  // No upstream sample: an empty histogram, still exposed.
  CHECK(has_line(text, "sluice_cluster_upstream_duration_seconds_count{cluster=\"main\"} 0"));
  CHECK(has_line(text, "sluice_downstream_requests_total{code=\"2xx\",listener=\"web\"} 3"));
  CHECK(has_line(text, "# TYPE sluice_downstream_requests_total counter"));
}

TEST_CASE("every family is named by the conventions", "[metrics]") {
  metrics::registry r(two_workers());
  auto b = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 1);
  r.set_backends([&](const metrics::backend_visitor& visit) { visit({0, b.get(), true}); });
  r.on_discovery_event(1);
  for (const auto& f : r.collect()) {
    INFO(f.name);
    CHECK(f.name.rfind("sluice_", 0) == 0);
    CHECK(!f.help.empty());
    const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
    CHECK(total == (f.type == prometheus::MetricType::Counter));
  }
}

TEST_CASE("control-plane state: reloads and discovery", "[metrics]") {
  metrics::registry r(two_workers());
  CHECK(r.config_version() == 1);
  r.on_config_reload(true);
  r.on_config_reload(false);
  CHECK(r.config_version() == 2);
  CHECK(r.discovery(0) == metrics::discovery_state::static_config);
  CHECK_FALSE(r.discovery_event_age(0));
  r.set_discovery_state(1, metrics::discovery_state::watching);
  r.on_discovery_event(1);
  r.on_discovery_invalid_entry(1);
  r.set_discovery_state(9, metrics::discovery_state::error);  // ignored
  r.on_discovery_event(9);
  CHECK(r.discovery(1) == metrics::discovery_state::watching);
  REQUIRE(r.discovery_event_age(1));
  CHECK(*r.discovery_event_age(1) >= 0);
  CHECK(*r.discovery_event_age(1) < 60);
  const auto text = r.serialize();
  INFO(text);
  CHECK(has_line(text, "sluice_config_reloads_total{result=\"success\"} 1"));
  CHECK(has_line(text, "sluice_config_reloads_total{result=\"failure\"} 1"));
  CHECK(has_line(text, "sluice_config_last_reload_successful 0"));
  CHECK(has_line(text, "sluice_discovery_state{cluster=\"other\",state=\"watching\"} 1"));
  CHECK(has_line(text, "sluice_discovery_state{cluster=\"main\",state=\"static\"} 1"));
  CHECK(has_line(text, "sluice_discovery_invalid_entries_total{cluster=\"other\"} 1"));
  CHECK(text.find("sluice_discovery_last_event_age_seconds{cluster=\"other\"}") != std::string::npos);
  CHECK(text.find("sluice_discovery_last_event_age_seconds{cluster=\"main\"}") == std::string::npos);
}

TEST_CASE("scraping while workers count is safe and monotonic", "[metrics]") {
  metrics::registry r(two_workers());
  auto b = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 1);
  r.set_backends([&](const metrics::backend_visitor& visit) { visit({0, b.get(), true}); });
  constexpr int n = 20000;
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < 2; ++w)
    workers.emplace_back([&, w] {
      for (int i = 0; i < n; ++i) {
        r.shard(w).on_connection_open(0);
        r.shard(w).on_request(0, 0, b.get(), 200, 1ms, 1ms, 1, 1);
        r.shard(w).on_connection_close(0);
      }
    });
  std::uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    auto t = r.cluster(0).request.count();
    CHECK(t >= last);
    last = t;
    (void)r.serialize();
  }
  for (auto& t : workers) t.join();
  CHECK(r.cluster(0).request.count() == 2u * n);
  CHECK(r.listener(0).active == 0);
  CHECK(metrics::registry::backend(*b).responses[1] == 2u * n);
}

TEST_CASE("TCP listeners: shard bytes and connections, shared close reasons", "[metrics]") {
  metrics::registry r(two_workers());
  auto c = r.tcp_listener(1);
  REQUIRE(c);
  CHECK(r.tcp_listener(1) == c);  // one object per listener
  CHECK_FALSE(r.tcp_listener(7));
  CHECK_FALSE(r.tcp_counters(0));
  CHECK(r.tcp_counters(1) == c);
  r.shard(0).on_connection_open(1);
  r.shard(1).on_connection_open(1);
  r.shard(1).on_connection_close(1);
  r.shard(0).on_received(1, 1000);
  r.shard(1).on_received(1, 24);
  r.shard(0).on_sent(1, 4096);
  r.shard(0).on_connect_failure(0);
  c->connect_failures.fetch_add(2);
  c->on_close(metrics::tcp_close_reason::refused);
  c->on_close(metrics::tcp_close_reason::reset);
  c->on_close(metrics::tcp_close_reason::reset);

  const auto t = r.listener(1);
  CHECK(t.accepted == 2);
  CHECK(t.active == 1);
  CHECK(t.bytes_in == 1024);
  CHECK(t.bytes_out == 4096);
  const auto text = r.serialize();
  INFO(text);
  CHECK(has_line(text, "sluice_downstream_connections_accepted_total{listener=\"api\"} 2"));
  CHECK(has_line(text, "sluice_downstream_connections_active{listener=\"api\"} 1"));
  CHECK(has_line(text, "sluice_downstream_received_bytes_total{listener=\"api\"} 1024"));
  CHECK(has_line(text, "sluice_downstream_sent_bytes_total{listener=\"api\"} 4096"));
  CHECK(has_line(text, "sluice_cluster_upstream_connect_failures_total{cluster=\"main\"} 1"));
  CHECK(has_line(text, "sluice_tcp_upstream_connect_failures_total{listener=\"api\"} 2"));
  CHECK(has_line(text, "sluice_tcp_connections_closed_total{listener=\"api\",reason=\"refused\"} 1"));
  CHECK(has_line(text, "sluice_tcp_connections_closed_total{listener=\"api\",reason=\"reset\"} 2"));
  CHECK(has_line(text, "sluice_tcp_connections_closed_total{listener=\"api\",reason=\"idle_timeout\"} 0"));
  // Only HTTP listeners get request series; only TCP listeners get sluice_tcp_* series.
  CHECK(text.find("sluice_downstream_requests_total{code=\"2xx\",listener=\"api\"}") == std::string::npos);
  CHECK(has_line(text, "sluice_downstream_requests_total{code=\"2xx\",listener=\"web\"} 0"));
  CHECK(text.find("listener=\"web\",reason=") == std::string::npos);
}

TEST_CASE("no TCP listener: no sluice_tcp families", "[metrics]") {
  metrics::registry r(two_workers());
  const auto fs = r.collect();
  CHECK_FALSE(family(fs, "sluice_tcp_connections_closed_total"));
  CHECK_FALSE(family(fs, "sluice_tcp_upstream_connect_failures_total"));
  CHECK_FALSE(family(fs, "sluice_discovery_connected"));
}

TEST_CASE("discovery sources are read through their probe", "[metrics]") {
  metrics::registry r(two_workers());
  metrics::discovery_sample s;
  s.state = metrics::discovery_state::watching;
  s.connected = true;
  s.revision = 42;
  s.last_event_age = 1.5;
  s.skipped = 3;
  s.updates = 4;
  s.disconnects = 1;
  s.full_reads = 2;
  s.endpoints = 5;
  r.set_discovery_source(1, [&] { return s; });
  r.set_discovery_source(9, [&] { return s; });  // ignored
  r.on_discovery_invalid_entry(1);  // the probe wins over pushed state
  CHECK(r.discovery(1) == metrics::discovery_state::watching);
  REQUIRE(r.discovery_event_age(1));
  CHECK(*r.discovery_event_age(1) == 1.5);
  CHECK_FALSE(r.discovery_source(0));
  REQUIRE(r.discovery_source(1));
  CHECK(r.discovery_source(1)->revision == 42);

  auto text = r.serialize();
  INFO(text);
  CHECK(has_line(text, "sluice_discovery_state{cluster=\"other\",state=\"watching\"} 1"));
  CHECK(has_line(text, "sluice_discovery_state{cluster=\"main\",state=\"static\"} 1"));
  CHECK(has_line(text, "sluice_discovery_connected{cluster=\"other\"} 1"));
  CHECK(has_line(text, "sluice_discovery_revision{cluster=\"other\"} 42"));
  CHECK(has_line(text, "sluice_discovery_last_event_age_seconds{cluster=\"other\"} 1.5"));
  CHECK(has_line(text, "sluice_discovery_invalid_entries_total{cluster=\"other\"} 3"));
  CHECK(has_line(text, "sluice_discovery_updates_total{cluster=\"other\"} 4"));
  CHECK(has_line(text, "sluice_discovery_disconnects_total{cluster=\"other\"} 1"));
  CHECK(has_line(text, "sluice_discovery_full_reads_total{cluster=\"other\"} 2"));
  CHECK(has_line(text, "sluice_discovery_endpoints{cluster=\"other\"} 5"));
  // A static cluster gets no per-source series.
  CHECK(text.find("sluice_discovery_connected{cluster=\"main\"}") == std::string::npos);

  s.connected = false;
  s.state = metrics::discovery_state::error;
  text = r.serialize();
  CHECK(has_line(text, "sluice_discovery_connected{cluster=\"other\"} 0"));
  CHECK(has_line(text, "sluice_discovery_state{cluster=\"other\",state=\"error\"} 1"));
  CHECK(r.discovery(1) == metrics::discovery_state::error);

  r.set_discovery_source(1, [] () -> metrics::discovery_sample { throw std::runtime_error("x"); });
  CHECK(r.discovery(1) == metrics::discovery_state::error);
  CHECK_FALSE(r.discovery_event_age(1));
}

TEST_CASE("new families follow the conventions", "[metrics]") {
  metrics::registry r(two_workers());
  r.tcp_listener(0);
  r.set_discovery_source(0, [] { return metrics::discovery_sample{}; });
  for (const auto& f : r.collect()) {
    INFO(f.name);
    CHECK(f.name.rfind("sluice_", 0) == 0);
    CHECK(!f.help.empty());
    const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
    CHECK(total == (f.type == prometheus::MetricType::Counter));
  }
}

// ---- slots that follow reloads -------------------------------------------------------------

TEST_CASE("slots: constructor order, idempotent lookups, new names appended", "[metrics][slots]") {
  auto lay = two_workers();
  lay.routes = {{"web", "api"}, {"web", "/"}};
  metrics::registry r(lay);
  CHECK(r.listener_slot("web") == 0);
  CHECK(r.listener_slot("api") == 1);
  CHECK(r.cluster_slot("main") == 0);
  CHECK(r.cluster_slot("other") == 1);
  CHECK(r.route_slot("web", "api") == 0);
  CHECK(r.route_slot("web", "/") == 1);
  CHECK(r.route_slot("api", "/") == 2);  // same label, other listener: its own slot
  CHECK(r.listener_slot("new") == 2);
  CHECK(r.listener_slot("new") == 2);
  CHECK(r.cluster_slot("new") == 2);
  const auto shape = r.shape();
  CHECK(shape.listeners == std::vector<std::string>{"web", "api", "new"});
  CHECK(shape.clusters == std::vector<std::string>{"main", "other", "new"});
  REQUIRE(shape.routes.size() == 3);
  CHECK(shape.routes[2] == metrics::route_name{"api", "/"});
  for (unsigned w = 0; w < r.workers(); ++w) {
    CHECK(r.shard(w).listeners() == 3);
    CHECK(r.shard(w).clusters() == 3);
    CHECK(r.shard(w).routes() == 3);
  }
}

TEST_CASE("slots: counters keep their address and values while slots grow", "[metrics][slots]") {
  metrics::registry r(two_workers());
  auto& s = r.shard(1);
  const auto* l0 = &s.listener(0);
  const auto* c1 = &s.cluster(1);
  s.on_connection_open(0);
  s.on_request(0, 1, nullptr, 200, 1ms, 0ns, 1, 2);
  std::vector<std::size_t> slots;
  for (int i = 0; i < 500; ++i) {
    slots.push_back(r.listener_slot("l" + std::to_string(i)));
    r.cluster_slot("c" + std::to_string(i));
    r.route_slot("web", "/r" + std::to_string(i));
  }
  CHECK(slots.front() == 2);
  CHECK(slots.back() == 501);
  CHECK(&s.listener(0) == l0);
  CHECK(&s.cluster(1) == c1);
  CHECK(r.listener(0).accepted == 1);
  CHECK(r.cluster(1).responses[1] == 1);
  // New slots start at zero and count.
  s.on_connection_open(501);
  s.on_request(501, 501, nullptr, 404, 1ms, 0ns, 0, 0, 499);
  CHECK(r.listener(501).accepted == 1);
  CHECK(r.cluster(501).responses[3] == 1);
  CHECK(r.route(499).responses[3] == 1);
  CHECK(r.listener(500).accepted == 0);
  // Slots nobody handed out are ignored.
  s.on_connection_open(502);
  s.on_request(0, 9999, nullptr, 200, 1ms, 0ns, 0, 0, 9999);
  CHECK(r.listener(502).accepted == 0);
  CHECK(r.route(9999).request.count() == 0);
}

TEST_CASE("per-route request counts and durations", "[metrics][routes]") {
  metrics::registry r(two_workers());
  const auto api = r.route_slot("web", "api");
  const auto root = r.route_slot("web", "/");
  const auto other = r.route_slot("api", "example.com/v1/");
  r.shard(0).on_request(0, 0, nullptr, 200, 1ms, 1ms, 0, 0, api);
  r.shard(1).on_request(0, 0, nullptr, 200, 2ms, 1ms, 0, 0, api);
  r.shard(1).on_request(0, 0, nullptr, 503, 300us, 0ns, 0, 0, api);
  r.shard(0).on_request(0, -1, nullptr, 404, 1ms, 0ns, 0, 0, root);
  r.shard(0).on_request(0, -1, nullptr, 404, 1ms, 0ns, 0, 0);  // no route matched
  r.shard(0).on_request(1, 1, nullptr, 0, 1ms, 0ns, 0, 0, other);  // no response: timed only
  const auto t = r.route(api);
  CHECK(t.responses[1] == 2);
  CHECK(t.responses[4] == 1);
  CHECK(t.request.count() == 3);
  CHECK(r.route(root).responses[3] == 1);
  CHECK(r.route(other).request.count() == 1);

  const auto text = r.serialize();
  INFO(text);
  CHECK(has_line(text, "# TYPE sluice_route_requests_total counter"));
  CHECK(has_line(text, "sluice_route_requests_total{code=\"2xx\",listener=\"web\",route=\"api\"} 2"));
  CHECK(has_line(text, "sluice_route_requests_total{code=\"5xx\",listener=\"web\",route=\"api\"} 1"));
  CHECK(has_line(text, "sluice_route_requests_total{code=\"4xx\",listener=\"web\",route=\"/\"} 1"));
  CHECK(has_line(text, "sluice_route_requests_total{code=\"2xx\",listener=\"api\",route=\"example.com/v1/\"} 0"));
  CHECK(has_line(text, "# TYPE sluice_route_request_duration_seconds histogram"));
  CHECK(has_line(text, "sluice_route_request_duration_seconds_count{listener=\"web\",route=\"api\"} 3"));
  CHECK(has_line(text, "sluice_route_request_duration_seconds_bucket{listener=\"web\",route=\"api\",le=\"0.0005\"} 1"));
  CHECK(has_line(text, "sluice_route_request_duration_seconds_count{listener=\"api\",route=\"example.com/v1/\"} 1"));
  // The listener totals are unchanged by the route label.
  CHECK(has_line(text, "sluice_downstream_requests_total{code=\"4xx\",listener=\"web\"} 2"));
}

TEST_CASE("no routes: no route families", "[metrics][routes]") {
  metrics::registry r(two_workers());
  const auto fs = r.collect();
  CHECK_FALSE(family(fs, "sluice_route_requests_total"));
  CHECK_FALSE(family(fs, "sluice_route_request_duration_seconds"));
}

TEST_CASE("retain hides names not in the current config and restores them", "[metrics][slots]") {
  auto lay = two_workers();
  lay.routes = {{"web", "api"}, {"web", "/"}};
  metrics::registry r(lay);
  metrics::discovery_sample ds;
  ds.state = metrics::discovery_state::watching;
  r.set_discovery_source(1, [&] { return ds; });
  auto& s = r.shard(0);
  s.on_connection_open(1);
  s.on_request(1, 1, nullptr, 200, 1ms, 0ns, 5, 7, 1);
  s.on_request(0, 0, nullptr, 200, 1ms, 0ns, 5, 7, 0);

  // Reload: listener "api", cluster "other" and route web "/" are gone; "db" is new.
  metrics::layout next;
  next.listeners = {"web", "db"};
  next.clusters = {"main"};
  next.routes = {{"web", "api"}};
  r.retain(next);
  CHECK(r.listener_slot("db") == 2);  // retain gave it a slot
  auto text = r.serialize();
  {
    INFO(text);
    CHECK(text.find("listener=\"api\"") == std::string::npos);
    CHECK(text.find("cluster=\"other\"") == std::string::npos);
    CHECK(text.find("route=\"/\"") == std::string::npos);
    CHECK(has_line(text, "sluice_downstream_connections_accepted_total{listener=\"db\"} 0"));
    CHECK(has_line(text, "sluice_route_requests_total{code=\"2xx\",listener=\"web\",route=\"api\"} 1"));
    CHECK(has_line(text, "sluice_cluster_requests_total{cluster=\"main\",code=\"2xx\"} 1"));
  }
  CHECK_FALSE(r.discovery_source(1));  // a hidden cluster's probe is dropped

  // Old sessions still count into hidden slots.
  s.on_request(1, 1, nullptr, 500, 1ms, 0ns, 1, 1, 1);
  s.on_connection_close(1);

  // The next reload brings them back: the counters continue.
  metrics::layout again = next;
  again.listeners.push_back("api");
  again.clusters.push_back("other");
  again.routes.push_back({"web", "/"});
  r.retain(again);
  CHECK(r.listener_slot("api") == 1);
  CHECK(r.route_slot("web", "/") == 1);
  text = r.serialize();
  INFO(text);
  CHECK(has_line(text, "sluice_downstream_connections_accepted_total{listener=\"api\"} 1"));
  CHECK(has_line(text, "sluice_downstream_connections_active{listener=\"api\"} 0"));
  CHECK(has_line(text, "sluice_downstream_requests_total{code=\"2xx\",listener=\"api\"} 1"));
  CHECK(has_line(text, "sluice_downstream_requests_total{code=\"5xx\",listener=\"api\"} 1"));
  CHECK(has_line(text, "sluice_cluster_requests_total{cluster=\"other\",code=\"5xx\"} 1"));
  CHECK(has_line(text, "sluice_route_requests_total{code=\"2xx\",listener=\"web\",route=\"/\"} 1"));
  CHECK(has_line(text, "sluice_route_requests_total{code=\"5xx\",listener=\"web\",route=\"/\"} 1"));
  CHECK(has_line(text, "sluice_discovery_state{cluster=\"other\",state=\"static\"} 1"));
}

TEST_CASE("only retain changes what is exported of a known name", "[metrics][slots]") {
  metrics::registry r(two_workers());
  metrics::layout only_web;
  only_web.listeners = {"web"};
  r.retain(only_web);
  CHECK(r.serialize().find("listener=\"api\"") == std::string::npos);
  CHECK(r.listener_slot("api") == 1);  // e.g. a reload that then fails
  CHECK(r.serialize().find("listener=\"api\"") == std::string::npos);
  CHECK(r.listener_slot("fresh") == 2);  // a new name is exported at once
  CHECK(r.serialize().find("sluice_downstream_connections_accepted_total{listener=\"fresh\"} 0") !=
        std::string::npos);
  only_web.listeners.push_back("api");
  r.retain(only_web);
  CHECK(r.serialize().find("sluice_downstream_connections_accepted_total{listener=\"api\"} 0") !=
        std::string::npos);
  CHECK(r.serialize().find("listener=\"fresh\"") == std::string::npos);
}

TEST_CASE("hidden clusters' backends are not exported", "[metrics][slots]") {
  metrics::registry r(two_workers());
  auto b = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 1);
  r.set_backends([&](const metrics::backend_visitor& visit) { visit({1, b.get(), true}); });
  CHECK(r.serialize().find("backend=\"127.0.0.1:8001\",cluster=\"other\"") != std::string::npos);
  metrics::layout next;
  next.clusters = {"main"};
  r.retain(next);
  CHECK(r.serialize().find("backend=\"127.0.0.1:8001\"") == std::string::npos);
}

TEST_CASE("discovery probes and TCP counters are replaced on reload", "[metrics][slots]") {
  metrics::registry r(two_workers());
  const auto slot = r.cluster_slot("etcd");
  metrics::discovery_sample a, b;
  a.revision = 1;
  b.revision = 2;
  r.set_discovery_source(slot, [&] { return a; });
  REQUIRE(r.discovery_source(slot));
  CHECK(r.discovery_source(slot)->revision == 1);
  r.set_discovery_source(slot, [&] { return b; });  // a new source for the same cluster
  CHECK(r.discovery_source(slot)->revision == 2);
  r.set_discovery_source(slot, nullptr);  // cleared: back to the pushed state
  CHECK_FALSE(r.discovery_source(slot));
  CHECK(r.discovery(slot) == metrics::discovery_state::static_config);
  r.set_discovery_state(slot, metrics::discovery_state::error);
  CHECK(r.discovery(slot) == metrics::discovery_state::error);

  const auto db = r.listener_slot("db");
  auto tcp = r.tcp_listener(db);
  REQUIRE(tcp);
  tcp->on_close(metrics::tcp_close_reason::reset);
  CHECK(r.tcp_listener(db) == tcp);  // same counters across a reload
  r.forget_tcp_listener(db);         // the listener became an http listener
  CHECK_FALSE(r.tcp_counters(db));
  const auto text = r.serialize();
  CHECK(has_line(text, "sluice_downstream_requests_total{code=\"2xx\",listener=\"db\"} 0"));
  CHECK(text.find("sluice_tcp_connections_closed_total{listener=\"db\"") == std::string::npos);
  CHECK(r.tcp_listener(db) != tcp);
}

TEST_CASE("a worker keeps counting while the control thread adds slots", "[metrics][slots]") {
  metrics::registry r(two_workers());
  constexpr std::size_t added = 3000;  // several hundred chunks of each kind
  std::atomic<std::size_t> newest{metrics::no_slot};  // last route slot handed out
  std::atomic<bool> done{false};
  std::uint64_t on_zero = 0, on_new = 0;
  REQUIRE(r.route_slot("web", "/0") == 0);  // the slot the worker counts into from the start
  std::thread worker([&] {
    auto& s = r.shard(1);
    while (!done.load(std::memory_order_acquire)) {
      s.on_request(0, 0, nullptr, 200, 1ms, 0ns, 1, 1, 0);
      ++on_zero;
      // What a worker sees of a slot handed to it through a post: the acquire pairs with the
      // release below, as the post's queue would.
      const auto slot = newest.load(std::memory_order_acquire);
      if (slot != metrics::no_slot) {
        s.on_request(slot, static_cast<int>(slot), nullptr, 200, 1ms, 0ns, 1, 1, slot);
        ++on_new;
      }
    }
  });
  for (std::size_t i = 0; i < added; ++i) {
    const auto n = std::to_string(i);
    const auto l = r.listener_slot("l" + n);
    const auto c = r.cluster_slot("c" + n);
    const auto rt = r.route_slot("web", "/" + n);
    REQUIRE(l == c);
    REQUIRE(rt == i);
    newest.store(rt, std::memory_order_release);
    if (i % 64 == 0) (void)r.serialize();  // a scrape meanwhile
  }
  done.store(true, std::memory_order_release);
  worker.join();
  std::uint64_t routes = 0;
  for (std::size_t i = 0; i < added; ++i) routes += r.route(i).request.count();
  CHECK(routes == on_zero + on_new);
  CHECK(r.route(0).responses[1] >= on_zero);
  CHECK(r.listener(0).responses[1] + r.listener(1).responses[1] <= on_zero + on_new);
}
