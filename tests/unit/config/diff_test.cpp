#include "sluice/config/diff.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

namespace {

using sluice::config::config;

config load(const std::string& yaml) {
  auto r = sluice::config::load_string(yaml, "test.yaml");
  for (const auto& e : r.errors) UNSCOPED_INFO(e.to_string());
  REQUIRE(r.errors.empty());
  return *r.value;
}

std::vector<std::string> lines(const std::vector<sluice::config::change>& changes) {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(c.to_string());
  return out;
}

std::vector<std::string> diff_text(const std::string& a, const std::string& b,
                                   sluice::config::diff_options opts = {}) {
  return lines(sluice::config::diff(load(a), load(b), opts));
}

const std::string base = R"(
workers: 2
drain_timeout: 30s
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { path_prefix: /ping }
        direct: { status: 200, body: "pong\n" }
      - match: { host: api.example.com, path_prefix: /v1/ }
        cluster: api
      - cluster: web
clusters:
  - name: web
    endpoints: [ 127.0.0.1:8001, 127.0.0.1:8002, { address: 127.0.0.1:8003, weight: 2 } ]
    timeouts: { connect: 1s }
    health: { type: http, path: /healthz }
  - name: api
    policy: least_conn
    endpoints: [ 127.0.0.1:9001 ]
)";

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to);
}

}  // namespace

TEST_CASE("identical configurations have no differences", "[diff]") {
  CHECK(diff_text(base, base).empty());
  // The same thing written differently is still the same.
  CHECK(diff_text(base, replace(base, "timeouts: { connect: 1s }", "timeouts: { connect: 1000ms }")).empty());
}

TEST_CASE("top-level settings", "[diff]") {
  auto b = replace(base, "workers: 2", "workers: auto");
  b = replace(b, "drain_timeout: 30s", "drain_timeout: 1m30s");
  b = replace(b, "admin: { address: 127.0.0.1:9901 }",
              "admin: { address: 127.0.0.1:9902, token: 0123456789abcdef0123 }");
  CHECK(diff_text(base, b) == std::vector<std::string>{
                                  "~ workers: 2 -> auto",
                                  "~ drain_timeout: 30s -> 1m30s",
                                  "~ admin.address: 127.0.0.1:9901 -> 127.0.0.1:9902",
                                  "~ admin.token: set",
                              });
}

TEST_CASE("listeners added, removed and changed", "[diff]") {
  auto b = replace(base, "    address: 127.0.0.1:8080\n",
                   "    address: 0.0.0.0:8080\n    timeouts: { header: 10s }\n    limits: { max_body: 1m }\n");
  b = replace(b, "clusters:\n", R"(  - name: pg
    address: 127.0.0.1:5433
    protocol: tcp
    cluster: api
clusters:
)");
  CHECK(diff_text(base, b) == std::vector<std::string>{
                                  "~ listener web: address: 127.0.0.1:8080 -> 0.0.0.0:8080",
                                  "~ listener web: timeouts.header: 1m -> 10s",
                                  "~ listener web: limits.max_body: 0 -> 1048576",
                                  "+ listener pg: tcp on 127.0.0.1:5433 -> cluster api",
                              });
  CHECK(diff_text(b, base).back() == "- listener pg: tcp on 127.0.0.1:5433 -> cluster api");
}

TEST_CASE("routes are matched by host and path prefix", "[diff]") {
  SECTION("target changed, route added and removed") {
    auto b = replace(base, "        cluster: api\n", "        cluster: web\n");
    b = replace(b, "      - match: { path_prefix: /ping }\n        direct: { status: 200, body: \"pong\\n\" }\n",
                "      - match: { path_prefix: /v2/ }\n        cluster: api\n");
    CHECK(diff_text(base, b) == std::vector<std::string>{
                                    "+ listener web: route /v2/ added (-> cluster api)",
                                    "~ listener web: route api.example.com/v1/: cluster api -> cluster web",
                                    "- listener web: route /ping removed (was -> direct 200 \"pong\\n\")",
                                });
  }
  SECTION("direct answer changed") {
    auto b = replace(base, "direct: { status: 200, body: \"pong\\n\" }", "direct: { status: 204 }");
    CHECK(diff_text(base, b) == std::vector<std::string>{
                                    "~ listener web: route /ping: direct 200 \"pong\\n\" -> direct 204"});
  }
  SECTION("order matters: the first match wins") {
    const std::string a = R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - { match: { path_prefix: /a }, cluster: x }
      - { match: { path_prefix: /b }, cluster: x }
clusters: [ { name: x, endpoints: [ 127.0.0.1:1 ] } ]
)";
    const std::string b = replace(replace(a, "/a }", "/TMP }"), "/b }", "/a }");
    CHECK(diff_text(a, replace(b, "/TMP }", "/b }")) ==
          std::vector<std::string>{"~ listener web: routes reordered: [/a, /b] -> [/b, /a]"});
  }
}

TEST_CASE("clusters: endpoints, policy, timeouts, health", "[diff]") {
  auto b = replace(base, "127.0.0.1:8001, 127.0.0.1:8002, { address: 127.0.0.1:8003, weight: 2 }",
                   "127.0.0.1:8002, { address: 127.0.0.1:8003, weight: 3 }, 127.0.0.1:8004");
  b = replace(b, "timeouts: { connect: 1s }", "timeouts: { connect: 2s, read: 5s }");
  b = replace(b, "health: { type: http, path: /healthz }",
              "health: { type: http, path: /health, interval: 5s }\n    outlier: {}\n    panic: spread");
  b = replace(b, "policy: least_conn", "policy: ring_hash\n    hash: { on: header, name: X-User }");
  CHECK(diff_text(base, b) == std::vector<std::string>{
                                  "~ cluster web: endpoint 127.0.0.1:8003: weight 2 -> 3",
                                  "+ cluster web: endpoint 127.0.0.1:8004 added (weight 1)",
                                  "- cluster web: endpoint 127.0.0.1:8001 removed",
                                  "~ cluster web: timeouts.connect: 1s -> 2s",
                                  "~ cluster web: timeouts.read: 1m -> 5s",
                                  "~ cluster web: health.interval: 2s -> 5s",
                                  "~ cluster web: health.path: /healthz -> /health",
                                  "~ cluster web: outlier: off -> on",
                                  "~ cluster web: panic: fail -> spread",
                                  "~ cluster api: policy: least_conn -> ring_hash",
                                  "~ cluster api: hash: client_ip -> header X-User",
                              });
}

TEST_CASE("clusters added and removed, discovery and secrets", "[diff]") {
  const std::string b = base + R"(  - name: hello
    protocol: h2c
    discovery:
      etcd: { endpoints: [ 127.0.0.1:2379 ], prefix: /hello/, username: u, password: secret1 }
)";
  CHECK(diff_text(base, b) == std::vector<std::string>{
                                  "+ cluster hello: round_robin, 0 endpoints + etcd discovery, protocol h2c"});
  CHECK(diff_text(b, base) == std::vector<std::string>{
                                  "- cluster hello: round_robin, 0 endpoints + etcd discovery, protocol h2c"});
  const auto c = replace(replace(b, "password: secret1", "password: secret2"), "/hello/", "/hi/");
  const auto out = diff_text(b, c);
  CHECK(out == std::vector<std::string>{"~ cluster hello: discovery.etcd.prefix: /hello/ -> /hi/",
                                        "~ cluster hello: discovery.etcd.password: changed"});
  for (const auto& line : out) CHECK(line.find("secret") == std::string::npos);
}

TEST_CASE("status_view keeps only what /status shows", "[diff]") {
  auto b = replace(base, "timeouts: { connect: 1s }", "timeouts: { connect: 9s }");
  b = replace(b, "drain_timeout: 30s", "drain_timeout: 5s");
  b = replace(b, "body: \"pong\\n\"", "body: \"PONG\"");
  using sluice::config::status_view;
  CHECK(sluice::config::diff(status_view(load(base)), status_view(load(b))).empty());
  b = replace(b, "policy: least_conn", "policy: random");
  CHECK(lines(sluice::config::diff(status_view(load(base)), status_view(load(b)))) ==
        std::vector<std::string>{"~ cluster api: policy: least_conn -> random"});
}

TEST_CASE("a running instance's discovered endpoints are not removals", "[diff]") {
  const std::string running = R"(
listeners: [ { name: web, address: 127.0.0.1:8080, routes: [ { cluster: hello } ] } ]
clusters:
  - name: hello
    endpoints: [ 127.0.0.1:7001, 127.0.0.1:7002 ]
    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ] } }
)";
  const std::string next = replace(running, "127.0.0.1:7001, 127.0.0.1:7002", "127.0.0.1:7003");
  CHECK(diff_text(running, next, {.from_running = true}) ==
        std::vector<std::string>{"+ cluster hello: endpoint 127.0.0.1:7003 added (weight 1)"});
  CHECK(diff_text(running, next).size() == 3);
}

TEST_CASE("format_duration writes what parse_duration reads back", "[diff]") {
  using namespace std::chrono_literals;
  using sluice::config::format_duration;
  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(500ms) == "500ms");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(format_duration(2s) == "2s");
  CHECK(format_duration(90s) == "1m30s");
  CHECK(format_duration(3600s) == "1h");
  CHECK(format_duration(3661s) == "1h1m1s");
  for (sluice::config::duration d : {1ms, 999ms, 1001ms, 60000ms, 61000ms, 7200000ms, 86400000ms})
    CHECK(sluice::config::parse_duration(format_duration(d)) == d);
}
