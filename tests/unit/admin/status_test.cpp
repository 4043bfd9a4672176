#include "sluice/admin/status.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

using namespace sluice;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

struct fixture {
  config::config cfg;
  std::vector<std::shared_ptr<pool::cluster>> clusters;
  std::shared_ptr<metrics::registry> reg;

  fixture() {
    cfg.file = "test.yaml";
    config::listener l;
    l.name = "web";
    l.address = "127.0.0.1:0";
    config::route r;
    r.cluster = "main";
    l.routes.push_back(r);
    config::route d;
    d.match.path_prefix = "/ping";
    d.direct = config::direct_response{};
    l.routes.push_back(d);
    cfg.listeners.push_back(l);
    config::cluster c;
    c.name = "main";
    c.endpoints = {{"127.0.0.1:8001", 1}, {"127.0.0.1:8002", 2}};
    cfg.clusters.push_back(c);

    auto cl = std::make_shared<pool::cluster>(c);
    cl->update({{*core::resolve("127.0.0.1:8001"), 1}, {*core::resolve("127.0.0.1:8002"), 2}});
    clusters.push_back(cl);

    metrics::layout lay;
    lay.listeners = {"web"};
    lay.clusters = {"main"};
    lay.workers = 1;
    reg = std::make_shared<metrics::registry>(lay);
    reg->set_backends(admin::backend_enumerator(clusters));
  }

  json::object doc(bool draining = false) {
    admin::status_inputs in;
    in.cfg = &cfg;
    in.clusters = clusters;
    in.metrics = reg.get();
    std::vector<std::uint16_t> ports{8080};
    in.listener_ports = ports;
    in.draining = draining;
    in.started = std::chrono::system_clock::now() - 5s;
    // Round-trip through text: what a client sees.
    return json::parse(json::serialize(admin::status(in))).as_object();
  }
};

}  // namespace

TEST_CASE("status document shape", "[admin][status]") {
  fixture f;
  auto snap = f.clusters[0]->current();
  core::backend* b0 = snap->backends[0].get();
  f.reg->shard(0).on_connection_open(0);
  f.reg->shard(0).on_request(0, 0, b0, 200, 1ms, 1ms, 10, 20);
  f.reg->shard(0).on_request(0, 0, b0, 502, 1ms, 1ms, 10, 20);
  b0->add_active(1);
  b0->stats().connect_failures.fetch_add(1);

  auto d = f.doc();
  CHECK(d.at("version").as_string() == SLUICE_VERSION);
  CHECK(d.at("draining").as_bool() == false);
  CHECK(d.at("uptime_seconds").as_double() >= 5.0);
  CHECK(d.at("config").at("file").as_string() == "test.yaml");
  CHECK(d.at("config").at("version").to_number<int>() == 1);
  CHECK(d.at("workers").to_number<int>() == 1);
  CHECK(d.at("active_requests").to_number<int>() == 1);

  const auto& l = d.at("listeners").as_array().at(0).as_object();
  CHECK(l.at("name").as_string() == "web");
  CHECK(l.at("protocol").as_string() == "http");
  CHECK(l.at("port").to_number<int>() == 8080);
  CHECK(l.at("connections_active").to_number<int>() == 1);
  CHECK(l.at("requests").at("2xx").to_number<int>() == 1);
  CHECK(l.at("routes").as_array().size() == 2);
  CHECK(l.at("routes").as_array()[0].at("cluster").as_string() == "main");
  CHECK(l.at("routes").as_array()[1].at("direct").to_number<int>() == 200);

  const auto& c = d.at("clusters").as_array().at(0).as_object();
  CHECK(c.at("name").as_string() == "main");
  CHECK(c.at("policy").as_string() == "round_robin");
  CHECK(c.at("discovery").at("source").as_string() == "static");
  CHECK(c.at("discovery").at("state").as_string() == "static");
  CHECK(c.at("discovery").at("last_event_age_seconds").is_null());
  CHECK(c.at("ready_count").to_number<int>() == 2);
  CHECK(c.at("active_requests").to_number<int>() == 1);
  CHECK(c.at("requests").at("5xx").to_number<int>() == 1);
  const auto& backends = c.at("backends").as_array();
  REQUIRE(backends.size() == 2);
  const auto& b = backends[0].as_object();
  CHECK(b.at("address").as_string() == "127.0.0.1:8001");
  CHECK(b.at("weight").to_number<int>() == 1);
  CHECK(b.at("state").as_string() == "healthy");
  CHECK(b.at("ready").as_bool());
  CHECK(b.at("draining").as_bool() == false);
  CHECK(b.at("active_requests").to_number<int>() == 1);
  CHECK(b.at("requests_total").to_number<int>() == 2);
  CHECK(b.at("errors_total").to_number<int>() == 2);  // one 5xx + one connect failure
  CHECK(b.at("responses").at("5xx").to_number<int>() == 1);
  CHECK(b.at("health_check").at("last").as_string() == "none");
  CHECK(backends[1].at("weight").to_number<int>() == 2);
}

TEST_CASE("status shows drained backends and the draining flag", "[admin][status]") {
  fixture f;
  REQUIRE(f.clusters[0]->set_draining("127.0.0.1:8002", true));
  CHECK_FALSE(f.clusters[0]->set_draining("127.0.0.1:9999", true));
  auto d = f.doc(true);
  CHECK(d.at("draining").as_bool());
  const auto& c = d.at("clusters").as_array().at(0).as_object();
  CHECK(c.at("ready_count").to_number<int>() == 1);
  const auto& b = c.at("backends").as_array()[1].as_object();
  CHECK(b.at("state").as_string() == "draining");
  CHECK(b.at("draining").as_bool());
  CHECK(b.at("ready").as_bool() == false);

  const auto text = f.reg->serialize();
  CHECK(text.find("sluice_backend_ready{backend=\"127.0.0.1:8002\",cluster=\"main\"} 0") !=
        std::string::npos);
  CHECK(text.find("sluice_backend_health{backend=\"127.0.0.1:8002\",cluster=\"main\",state=\"draining\"} 1") !=
        std::string::npos);
}

TEST_CASE("status tolerates missing parts", "[admin][status]") {
  admin::status_inputs in;  // no config, no clusters, no metrics
  auto d = admin::status(in).as_object();
  CHECK(d.at("listeners").as_array().empty());
  CHECK(d.at("clusters").as_array().empty());
  CHECK(d.at("active_requests").to_number<int>() == 0);
}

TEST_CASE("status shows TCP listener counters and discovery sources", "[admin][status]") {
  fixture f;
  f.cfg.listeners[0].protocol = config::listener::protocol_kind::tcp;
  f.cfg.listeners[0].cluster = "main";
  auto tcp = f.reg->tcp_listener(0);
  REQUIRE(tcp);
  f.reg->shard(0).on_connection_open(0);
  f.reg->shard(0).on_received(0, 100);
  f.reg->shard(0).on_sent(0, 300);
  tcp->connect_failures.fetch_add(1);
  tcp->on_close(metrics::tcp_close_reason::refused);
  metrics::discovery_sample s;
  s.state = metrics::discovery_state::watching;
  s.connected = true;
  s.revision = 9;
  s.last_event_age = 2.0;
  s.updates = 3;
  s.endpoints = 2;
  f.reg->set_discovery_source(0, [&] { return s; });

  auto d = f.doc();
  const auto& l = d.at("listeners").as_array().at(0).as_object();
  CHECK(l.at("protocol").as_string() == "tcp");
  CHECK(l.at("connections_active").to_number<int>() == 1);
  CHECK(l.at("received_bytes").to_number<int>() == 100);
  CHECK(l.at("sent_bytes").to_number<int>() == 300);
  CHECK(l.at("upstream_connect_failures_total").to_number<int>() == 1);
  CHECK(l.at("closed").at("refused").to_number<int>() == 1);
  CHECK(l.at("closed").at("reset").to_number<int>() == 0);

  const auto& disc = d.at("clusters").as_array().at(0).at("discovery").as_object();
  CHECK(disc.at("state").as_string() == "watching");
  CHECK(disc.at("connected").as_bool());
  CHECK(disc.at("revision").to_number<int>() == 9);
  CHECK(disc.at("last_event_age_seconds").as_double() == 2.0);
  CHECK(disc.at("updates_total").to_number<int>() == 3);
  CHECK(disc.at("endpoints").to_number<int>() == 2);
  CHECK(disc.at("disconnects_total").to_number<int>() == 0);
  CHECK(disc.at("full_reads_total").to_number<int>() == 0);
  CHECK(disc.at("invalid_entries_total").to_number<int>() == 0);

  s.connected = false;
  s.state = metrics::discovery_state::error;
  d = f.doc();
  CHECK(d.at("clusters").as_array().at(0).at("discovery").at("connected").as_bool() == false);
  CHECK(d.at("clusters").as_array().at(0).at("discovery").at("state").as_string() == "error");
}
