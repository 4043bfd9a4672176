#include "sluice/admin/status_client.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "sluice/admin/status.hpp"
#include "sluice/config/diff.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/core/address.hpp"
#include "sluice/pool/cluster.hpp"

using namespace sluice;
using namespace std::chrono_literals;

namespace {

const char* yaml = R"(
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - { match: { path_prefix: /ping }, direct: { status: 204 } }
      - { match: { host: "*.example.com", path_prefix: /api/ }, cluster: api }
      - cluster: web
  - { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: api }
clusters:
  - name: web
    policy: p2c
    endpoints: [ 127.0.0.1:8001, { address: 127.0.0.1:8002, weight: 5 } ]
    health: { type: tcp }
  - name: api
    protocol: h2c
    endpoints: [ 127.0.0.1:9001 ]
    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ] } }
)";

// The /status text a running instance with `cfg` would serve (backends = static endpoints,
// plus `extra` as if discovered for the api cluster).
std::string status_text(const config::config& cfg, std::vector<std::string> extra = {}) {
  std::vector<std::shared_ptr<pool::cluster>> clusters;
  for (const auto& c : cfg.clusters) {
    auto cl = std::make_shared<pool::cluster>(c);
    std::vector<pool::endpoint> eps;
    for (const auto& e : c.endpoints) eps.push_back({*core::resolve(e.address), e.weight});
    if (c.discovery)
      for (const auto& a : extra) eps.push_back({*core::resolve(a), 1});
    cl->update(eps);
    clusters.push_back(cl);
  }
  admin::status_inputs in;
  in.cfg = &cfg;
  in.clusters = clusters;
  return boost::json::serialize(admin::status(in));
}

config::config load() {
  auto r = config::load_string(yaml, "running.yaml");
  REQUIRE(r.errors.empty());
  return *r.value;
}

}  // namespace

TEST_CASE("config_from_status reads back the status view of the running configuration", "[status_client]") {
  const auto cfg = load();
  std::string err;
  auto live = admin::config_from_status(status_text(cfg), &err);
  REQUIRE(live);
  CHECK(err.empty());
  CHECK(live->file == "running.yaml");
  CHECK(config::diff(*live, config::status_view(cfg)).empty());
  REQUIRE(live->clusters.size() == 2);
  CHECK(live->clusters[0].endpoints.size() == 2);
  CHECK(live->clusters[0].endpoints[1].weight == 5);
  CHECK(live->clusters[1].discovery.has_value());
  CHECK(live->listeners[0].routes[0].direct->status == 204);
  CHECK(live->listeners[1].cluster == "api");
}

TEST_CASE("diff against a running instance with discovered backends", "[status_client]") {
  const auto cfg = load();
  auto live = admin::config_from_status(status_text(cfg, {"127.0.0.1:9002", "127.0.0.1:9003"}), nullptr);
  REQUIRE(live);
  auto next = cfg;
  next.clusters[0].policy = config::policy_kind::least_conn;
  next.clusters[0].endpoints.pop_back();
  next.clusters[1].endpoints.push_back({"127.0.0.1:9004", 1});
  std::vector<std::string> lines;
  for (const auto& c : config::diff(*live, config::status_view(next), {.from_running = true}))
    lines.push_back(c.to_string());
  CHECK(lines == std::vector<std::string>{
                     "~ cluster web: policy: p2c -> least_conn",
                     "- cluster web: endpoint 127.0.0.1:8002 removed",
                     "+ cluster api: endpoint 127.0.0.1:9004 added (weight 1)",
                 });
}

TEST_CASE("config_from_status rejects documents it cannot read", "[status_client]") {
  std::string err;
  CHECK_FALSE(admin::config_from_status("not json", &err));
  CHECK(err.find("not JSON") != std::string::npos);
  CHECK_FALSE(admin::config_from_status("[]", &err));
  CHECK_FALSE(admin::config_from_status(R"({"listeners": [], "clusters": 3})", &err));
  CHECK(err == "status document: clusters: expected a list");
  CHECK_FALSE(admin::config_from_status(
      R"({"listeners": [], "clusters": [{"name": "a", "policy": "maglev2", "protocol": "http1",
          "health_check": "none", "backends": []}]})", &err));
  CHECK(err == "status document: clusters[0].policy: unknown value 'maglev2'");
  CHECK_FALSE(admin::config_from_status(
      R"({"listeners": [{"name": "w", "address": "x:1", "protocol": "http", "routes": [{"host": ""}]}],
          "clusters": []})", &err));
  CHECK(err == "status document: listeners[0].routes[0].path_prefix: missing");
  auto empty = admin::config_from_status(R"({"listeners": [], "clusters": []})", &err);
  REQUIRE(empty);
  CHECK(empty->listeners.empty());
}

TEST_CASE("fetch_status refuses bad URLs and reports unreachable listeners", "[status_client]") {
  std::string err;
  CHECK_FALSE(admin::fetch_status("https://127.0.0.1:9901", "", 2s, &err));
  CHECK(err.find("only http://") != std::string::npos);
  CHECK_FALSE(admin::fetch_status("http://127.0.0.1:9901/status", "", 2s, &err));
  CHECK(err.find("without a path") != std::string::npos);
  CHECK_FALSE(admin::fetch_status("http://127.0.0.1", "", 2s, &err));
  CHECK(err.find("expected http://HOST:PORT") != std::string::npos);
  // Port 1 on loopback: nothing listens there (connection refused), answered at once.
  CHECK_FALSE(admin::fetch_status("127.0.0.1:1", "", 5s, &err));
  CHECK(err.find("127.0.0.1:1: cannot connect") == 0);
}
