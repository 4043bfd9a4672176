#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

using namespace std::chrono_literals;
namespace cfg = sluice::config;

namespace {

std::vector<std::string> errors_of(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  CHECK(r.value.has_value() == out.empty());
  return out;
}

// The only error of `yaml`, as text.
std::string error_of(const std::string& yaml) {
  auto e = errors_of(yaml);
  REQUIRE(e.size() == 1);
  return e.front();
}

// A valid configuration with a hole to put the part under test in.
std::string with_cluster(const std::string& cluster_yaml) {
  return "listeners:\n"
         "  - { name: web, address: 127.0.0.1:0, routes: [ { cluster: web } ] }\n"
         "clusters:\n" +
         cluster_yaml;
}

const char* full_config = R"(# every section, non-default values
workers: 4
drain_timeout: 1m30s
admin: { address: 127.0.0.1:9901 }
log:
  error_log: /var/log/sluice/error.log
  level: warn
  access: { path: /var/log/sluice/access.log, format: json }
listeners:
  - name: web
    address: 0.0.0.0:8080
    protocol: http
    timeouts: { header: 5s, idle: 30s, body: 10s, send: 15s }
    limits:
      max_request_line: 4k
      max_header_bytes: 16k
      max_headers: 50
      max_body: 10m
      max_keepalive_requests: 200
    forwarded: true
    routes:
      - match: { host: "*.Example.com", path_prefix: /api/ }
        cluster: api
      - match: { path_prefix: /healthz }
        direct: { status: 204 }
      - direct: { status: 404, body: "not here\n", content_type: text/html }
  - name: db
    address: "[::1]:5433"
    protocol: tcp
    cluster: pg
clusters:
  - name: api
    policy: ring_hash
    hash: { on: cookie, name: session }
    protocol: h2c
    endpoints:
      - 127.0.0.1:8001
      - { address: "[::1]:8002", weight: 3 }
      - localhost:8003
    timeouts: { connect: 250ms, read: 2m, write: 45s }
    pool: { max_idle: 8, idle_timeout: 20s }
    health: { type: grpc, interval: 3s, timeout: 500ms, healthy: 1, unhealthy: 5 }
    max_tries: 2
  - name: pg
    policy: least_conn
    discovery:
      etcd: { endpoints: [ 127.0.0.1:2379, "[::1]:2379" ], prefix: /db/ }
    health: { type: http, path: /ready }
)";

}  // namespace

TEST_CASE("a full configuration is read into the right values", "[config]") {
  auto r = cfg::load_string(full_config, "full.yaml");
  for (const auto& d : r.errors) FAIL_CHECK(d.to_string());
  REQUIRE(r.value);
  const cfg::config& c = *r.value;
  CHECK(c.file == "full.yaml");
  CHECK(c.workers == 4);
  CHECK(c.drain_timeout == 90s);
  CHECK(c.admin.address == "127.0.0.1:9901");
  CHECK(c.log.error_log == "/var/log/sluice/error.log");
  CHECK(c.log.level == "warn");
  CHECK(c.log.access.path == "/var/log/sluice/access.log");
  CHECK(c.log.access.format == "json");

  REQUIRE(c.listeners.size() == 2);
  const auto& web = c.listeners[0];
  CHECK(web.name == "web");
  CHECK(web.address == "0.0.0.0:8080");
  CHECK(web.protocol == cfg::listener::protocol_kind::http);
  CHECK(web.timeouts.header == 5s);
  CHECK(web.timeouts.idle == 30s);
  CHECK(web.timeouts.body == 10s);
  CHECK(web.timeouts.send == 15s);
  CHECK(web.limits.max_request_line == 4096);
  CHECK(web.limits.max_header_bytes == 16384);
  CHECK(web.limits.max_headers == 50);
  CHECK(web.limits.max_body == 10u * 1024 * 1024);
  CHECK(web.limits.max_keepalive_requests == 200);
  CHECK(web.forwarded);
  REQUIRE(web.routes.size() == 3);
  CHECK(web.routes[0].match.host == "*.example.com");  // hosts are case-insensitive
  CHECK(web.routes[0].match.path_prefix == "/api/");
  CHECK(web.routes[0].cluster == "api");
  CHECK_FALSE(web.routes[0].direct);
  CHECK(web.routes[1].match.host.empty());
  CHECK(web.routes[1].match.path_prefix == "/healthz");
  CHECK(web.routes[1].cluster.empty());
  REQUIRE(web.routes[1].direct);
  CHECK(web.routes[1].direct->status == 204);
  CHECK(web.routes[1].direct->body.empty());
  CHECK(web.routes[1].direct->content_type == "text/plain");
  CHECK(web.routes[2].match.path_prefix == "/");
  REQUIRE(web.routes[2].direct);
  CHECK(web.routes[2].direct->status == 404);
  CHECK(web.routes[2].direct->body == "not here\n");
  CHECK(web.routes[2].direct->content_type == "text/html");

  const auto& db = c.listeners[1];
  CHECK(db.name == "db");
  CHECK(db.address == "[::1]:5433");
  CHECK(db.protocol == cfg::listener::protocol_kind::tcp);
  CHECK(db.cluster == "pg");
  CHECK(db.routes.empty());
  CHECK(db.timeouts.idle == 75s);  // default
  CHECK_FALSE(db.forwarded);

  REQUIRE(c.clusters.size() == 2);
  const auto& api = c.clusters[0];
  CHECK(api.name == "api");
  CHECK(api.policy == cfg::policy_kind::ring_hash);
  CHECK(api.hash.what == cfg::hash_on::kind::cookie);
  CHECK(api.hash.name == "session");
  CHECK(api.protocol == cfg::upstream_protocol::h2c);
  REQUIRE(api.endpoints.size() == 3);
  CHECK(api.endpoints[0].address == "127.0.0.1:8001");
  CHECK(api.endpoints[0].weight == 1);
  CHECK(api.endpoints[1].address == "[::1]:8002");
  CHECK(api.endpoints[1].weight == 3);
  CHECK(api.endpoints[2].address == "localhost:8003");
  CHECK_FALSE(api.discovery);
  CHECK(api.timeouts.connect == 250ms);
  CHECK(api.timeouts.read == 2min);
  CHECK(api.timeouts.write == 45s);
  CHECK(api.pool.max_idle == 8);
  CHECK(api.pool.idle_timeout == 20s);
  CHECK(api.health.type == cfg::health_check::kind::grpc);
  CHECK(api.health.interval == 3s);
  CHECK(api.health.timeout == 500ms);
  CHECK(api.health.healthy == 1);
  CHECK(api.health.unhealthy == 5);
  CHECK(api.max_tries == 2);

  const auto& pg = c.clusters[1];
  CHECK(pg.policy == cfg::policy_kind::least_conn);
  CHECK(pg.endpoints.empty());
  REQUIRE(pg.discovery);
  CHECK(pg.discovery->endpoints == std::vector<std::string>{"127.0.0.1:2379", "[::1]:2379"});
  CHECK(pg.discovery->prefix == "/db/");
  CHECK(pg.health.type == cfg::health_check::kind::http);
  CHECK(pg.health.path == "/ready");
  CHECK(pg.health.interval == 2s);  // default
  CHECK(pg.max_tries == 3);         // default
  CHECK(c.find_cluster("pg") == &pg);
}

TEST_CASE("a minimal configuration takes the defaults", "[config]") {
  auto r = cfg::load_string("listeners:\n"
                            "  - name: hello\n"
                            "    address: 127.0.0.1:0\n"
                            "    routes: [ { direct: { body: hi } } ]\n"
                            "workers: auto\n",
                            "min.yaml");
  REQUIRE(r.errors.empty());
  REQUIRE(r.value);
  const auto& c = *r.value;
  CHECK(c.workers == 0);
  CHECK(c.drain_timeout == 30s);
  CHECK(c.admin.address.empty());
  CHECK(c.log.level == "info");
  CHECK(c.log.access.format == "combined");
  REQUIRE(c.listeners.size() == 1);
  const auto& l = c.listeners[0];
  CHECK(l.protocol == cfg::listener::protocol_kind::http);
  CHECK(l.timeouts.header == 60s);
  CHECK(l.limits.max_request_line == 8192);
  CHECK(l.limits.max_body == 0);
  REQUIRE(l.routes.size() == 1);
  CHECK(l.routes[0].match.path_prefix == "/");
  REQUIRE(l.routes[0].direct);
  CHECK(l.routes[0].direct->status == 200);
  CHECK(l.routes[0].direct->body == "hi");
  CHECK(c.clusters.empty());
}

TEST_CASE("diagnostic text", "[config]") {
  cfg::diagnostic d{"a.yaml", 3, 7, "clusters[0].name", "must not be empty"};
  CHECK(d.to_string() == "a.yaml:3:7: clusters[0].name: must not be empty");
  d.key_path.clear();
  CHECK(d.to_string() == "a.yaml:3:7: must not be empty");
  d.line = d.column = 0;
  CHECK(d.to_string() == "a.yaml: must not be empty");
}

TEST_CASE("unknown keys are reported with a suggestion", "[config]") {
  auto r = cfg::load_string("listeners:\n"
                            "  - name: web\n"
                            "    address: 127.0.0.1:0\n"
                            "    tiemouts: { header: 5s }\n"
                            "    routes: [ { direct: {} } ]\n"
                            "frobnicate: 1\n",
                            "test.yaml");
  REQUIRE(r.errors.size() == 2);
  const auto& d = r.errors[0];
  CHECK(d.file == "test.yaml");
  CHECK(d.line == 4);
  CHECK(d.column == 5);
  CHECK(d.key_path == "listeners[0].tiemouts");
  CHECK(d.message == "unknown key 'tiemouts' (did you mean 'timeouts'?)");
  CHECK(r.errors[1].to_string() == "test.yaml:6:1: frobnicate: unknown key 'frobnicate'");
}

TEST_CASE("bad durations say what a duration looks like", "[config]") {
  CHECK(error_of("drain_timeout: 30\nlisteners: [ { name: a, address: 127.0.0.1:0, routes: [ { "
                 "direct: {} } ] } ]\n") ==
        "test.yaml:1:16: drain_timeout: expected a duration like 500ms, 2s, 1m, got '30' "
        "(a bare number is ambiguous: add a unit, e.g. 30s or 30ms)");
  auto e = errors_of(with_cluster("  - name: web\n"
                                  "    endpoints: [ 127.0.0.1:1 ]\n"
                                  "    timeouts: { connect: 2 seconds, read: 0s }\n"));
  REQUIRE(e.size() == 2);
  CHECK(e[0] == "test.yaml:6:26: clusters[0].timeouts.connect: expected a duration like 500ms, "
                "2s, 1m, got '2 seconds'");
  CHECK(e[1] == "test.yaml:6:43: clusters[0].timeouts.read: must be greater than 0s");
}

TEST_CASE("a route naming a missing cluster is reported at its cluster key", "[config]") {
  auto r = cfg::load_string("listeners:\n"
                            "  - name: web\n"
                            "    address: 127.0.0.1:0\n"
                            "    routes:\n"
                            "      - match: { path_prefix: /a }\n"
                            "        cluster: wbe\n"
                            "clusters:\n"
                            "  - { name: web, endpoints: [ 127.0.0.1:1 ] }\n",
                            "test.yaml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].line == 6);
  CHECK(r.errors[0].column == 18);
  CHECK(r.errors[0].key_path == "listeners[0].routes[0].cluster");
  CHECK(r.errors[0].to_string() ==
        "test.yaml:6:18: listeners[0].routes[0].cluster: unknown cluster 'wbe' (did you mean "
        "'web'?)");
  CHECK(error_of("listeners: [ { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: pg } ]\n") ==
        "test.yaml:1:72: listeners[0].cluster: unknown cluster 'pg' (no clusters are defined)");
}

TEST_CASE("ring_hash on a header needs the header name", "[config]") {
  CHECK(error_of(with_cluster("  - name: web\n"
                              "    policy: ring_hash\n"
                              "    hash: { on: header }\n"
                              "    endpoints: [ 127.0.0.1:1 ]\n")) ==
        "test.yaml:6:11: clusters[0].hash.name: missing required key 'name' (the header to hash "
        "on)");
  CHECK(error_of(with_cluster("  - name: web\n"
                              "    hash: { on: client_ip }\n"
                              "    endpoints: [ 127.0.0.1:1 ]\n")) ==
        "test.yaml:5:5: clusters[0].hash: 'hash' is only used by policy ring_hash");
}

TEST_CASE("missing required keys are reported at the enclosing mapping", "[config]") {
  auto e = errors_of("listeners:\n"
                     "  - address: 127.0.0.1:0\n"
                     "    routes: [ { cluster: web } ]\n"
                     "clusters:\n"
                     "  - name: web\n"
                     "    endpoints:\n"
                     "      - { weight: 2 }\n");
  REQUIRE(e.size() == 2);
  CHECK(e[0] == "test.yaml:2:5: listeners[0].name: missing required key 'name'");
  CHECK(e[1] == "test.yaml:7:9: clusters[0].endpoints[0].address: missing required key 'address'");
  CHECK(error_of("workers: 2\n") == "test.yaml:1:1: listeners: missing required key 'listeners'");
}

TEST_CASE("every error is collected, in file order", "[config]") {
  auto e = errors_of("workers: 0\n"
                     "listeners:\n"
                     "  - name: web\n"
                     "    address: localhost\n"
                     "    protocol: tcp\n"
                     "    cluster: nowhere\n"
                     "  - name: web\n"
                     "    address: 127.0.0.1:8080\n"
                     "    routes:\n"
                     "      - match: { host: 'a.*.com', path_prefix: api }\n"
                     "        cluster: c1\n"
                     "        direct: { status: 99 }\n"
                     "  - name: other\n"
                     "    address: 127.0.0.1:8080\n"
                     "    routes: []\n"
                     "clusters:\n"
                     "  - name: c1\n"
                     "    policy: round-robin\n"
                     "    endpoints: [ 127.0.0.1:1, { address: 127.0.0.1:2, weight: 1001 } ]\n"
                     "    max_tries: 0\n"
                     "  - name: c1\n"
                     "  - name: c3\n"
                     "    endpoints: []\n"
                     "    health: { type: http, healthy: x, timeout: 1h }\n");
  const std::vector<std::string> expected = {
      "test.yaml:1:10: workers: must be between 1 and 256, got 0",
      "test.yaml:4:14: listeners[0].address: expected host:port like 127.0.0.1:8080 or "
      "[::1]:8080 (port 0-65535), got 'localhost'",
      "test.yaml:6:14: listeners[0].cluster: unknown cluster 'nowhere'",
      "test.yaml:7:11: listeners[1].name: duplicate listener name 'web' (first at line 3)",
      "test.yaml:10:24: listeners[1].routes[0].match.host: expected a host name like "
      "example.com or *.example.com, got 'a.*.com' ('*' is only allowed as a leading '*.')",
      "test.yaml:10:48: listeners[1].routes[0].match.path_prefix: must start with '/', got 'api'",
      "test.yaml:12:9: listeners[1].routes[0].direct: a route has either 'cluster' or 'direct', "
      "not both",
      "test.yaml:12:27: listeners[1].routes[0].direct.status: must be between 100 and 599, got 99",
      "test.yaml:14:14: listeners[2].address: address '127.0.0.1:8080' is already used by "
      "listener 'web' (line 8)",
      "test.yaml:15:13: listeners[2].routes: an http listener needs at least one route",
      "test.yaml:18:13: clusters[0].policy: expected one of round_robin, least_conn, random, p2c "
      "or ring_hash, got 'round-robin' (did you mean 'round_robin'?)",
      "test.yaml:19:63: clusters[0].endpoints[1].weight: must be between 1 and 1000, got 1001",
      "test.yaml:20:16: clusters[0].max_tries: must be between 1 and 10, got 0",
      "test.yaml:21:5: clusters[1]: a cluster needs 'endpoints' or 'discovery'",
      "test.yaml:21:11: clusters[1].name: duplicate cluster name 'c1' (first at line 17)",
      "test.yaml:23:16: clusters[2].endpoints: needs at least one endpoint (or use 'discovery')",
      "test.yaml:24:36: clusters[2].health.healthy: expected an integer between 1 and 1000, got "
      "'x'",
  };
  CHECK(e == expected);
}

TEST_CASE("wrong shapes and protocols", "[config]") {
  CHECK(error_of("listeners: { name: web }\n") ==
        "test.yaml:1:12: listeners: expected a list, got a mapping");
  CHECK(error_of("- a\n") == "test.yaml:1:1: expected a mapping, got a list");
  CHECK(errors_of("listeners:\n  - name: web\n    address: 127.0.0.1:0\n    protocol: tcp\n"
                  "    routes: [ { direct: {} } ]\n") ==
        std::vector<std::string>{
            "test.yaml:2:5: listeners[0].cluster: missing required key 'cluster'",
            "test.yaml:5:5: listeners[0].routes: 'routes' are for http listeners; a tcp listener "
            "forwards to its 'cluster'"});
  CHECK(error_of("listeners:\n  - name: web\n    address: 127.0.0.1:0\n    protocol: tcp\n"
                 "    cluster: c\n    routes: [ { direct: {} } ]\n"
                 "clusters: [ { name: c, endpoints: [ 127.0.0.1:1 ] } ]\n") ==
        "test.yaml:6:5: listeners[0].routes: 'routes' are for http listeners; a tcp listener "
        "forwards to its 'cluster'");
  CHECK(error_of("listeners: [ { name: web, address: '127.0.0.1:0', routes: [ { direct: {} } ], "
                 "headers_with_underscores: dropped } ]\n") ==
        "test.yaml:1:105: listeners[0].headers_with_underscores: expected one of drop, allow or "
        "reject, got 'dropped'");
  CHECK(error_of("listeners: [ { name: web, address: '127.0.0.1:0', protocol: tcp, cluster: c, "
                 "headers_with_underscores: allow } ]\n"
                 "clusters: [ { name: c, endpoints: [ 127.0.0.1:1 ] } ]\n") ==
        "test.yaml:1:78: listeners[0].headers_with_underscores: 'headers_with_underscores' is for "
        "listeners with protocol: http");
  CHECK(error_of("listeners: [ { name: web, address: '127.0.0.1:0', routes: [ { direct: {} } ], "
                 "forwarded: 1 } ]\n") ==
        "test.yaml:1:90: listeners[0].forwarded: expected true or false, got '1'");
  CHECK(error_of("listeners: [ { name: 'a b', address: 127.0.0.1:0, routes: [ { direct: {} } ] } ]\n") ==
        "test.yaml:1:22: listeners[0].name: invalid name 'a b': use letters, digits, '_', '-' "
        "and '.' (at most 128)");
  CHECK(error_of("admin: { address: 127.0.0.1:9901 }\n"
                 "listeners: [ { name: a, address: 127.0.0.1:9901, routes: [ { direct: {} } ] } ]\n") ==
        "test.yaml:2:34: listeners[0].address: address '127.0.0.1:9901' is already used by the "
        "admin listener (line 1)");
  CHECK(error_of(with_cluster("  - name: web\n"
                              "    discovery: { etcd: { endpoints: [ 'http://127.0.0.1:2379' ] } }\n")) ==
        "test.yaml:5:39: clusters[0].discovery.etcd.endpoints[0]: expected host:port like "
        "127.0.0.1:8080 or [::1]:8080 (port 1-65535), got 'http://127.0.0.1:2379'; leave out the "
        "scheme");
  CHECK(error_of(with_cluster("  - name: web\n"
                              "    endpoints: [ 127.0.0.1:1 ]\n"
                              "    health: { type: grpc }\n")) ==
        "test.yaml:6:21: clusters[0].health.type: grpc health checks need an HTTP/2 cluster "
        "(protocol: h2c or h2)");
  CHECK(error_of(with_cluster("  - name: web\n"
                              "    endpoints: [ 127.0.0.1:1, '127.0.0.1:1' ]\n")) ==
        "test.yaml:5:31: clusters[0].endpoints[1]: duplicate endpoint '127.0.0.1:1' (first at line "
        "5); use 'weight' to give it more traffic");
}

TEST_CASE("duplicated keys in a mapping", "[config]") {
  CHECK(error_of("workers: 1\nworkers: 2\nlisteners: [ { name: a, address: 127.0.0.1:0, "
                 "routes: [ { direct: {} } ] } ]\n") ==
        "test.yaml:2:1: workers: duplicate key 'workers' (first at line 1)");
}

TEST_CASE("YAML syntax errors, empty and multi-document files", "[config]") {
  CHECK(error_of("listeners: [ { name: a\n") ==
        "test.yaml:2:1: invalid YAML: end of map flow not found");
  CHECK(error_of("") == "test.yaml: the configuration is empty (at least one listener is required)");
  CHECK(error_of("# only a comment\n") ==
        "test.yaml: the configuration is empty (at least one listener is required)");
  CHECK(error_of("workers: 1\n---\nworkers: 2\n") ==
        "test.yaml:2:1: expected one YAML document, found 2");
  CHECK(error_of("listeners: []\n") == "test.yaml:1:12: listeners: at least one listener is required");
}

TEST_CASE("hostile input gives an error, never a crash or a hang", "[config]") {
  // A cyclic alias and a deep nesting: yaml-cpp refuses the latter, the schema walk never
  // follows the former past its fixed depth.
  CHECK_FALSE(cfg::load_string("listeners: &a [ *a ]\n", "x.yaml").errors.empty());
  CHECK(error_of(std::string(100000, '[') + std::string(100000, ']')) ==
        "test.yaml:1:1: invalid YAML: nested too deeply");
  // Aliases fanning out: 600 listeners x 1000 routes from a file of a few kilobytes.
  std::string yaml = "routes: &r [";
  for (int i = 0; i < 1000; ++i) yaml += "{ direct: {} }, ";
  yaml += "]\n";
  std::string fan = "x: &l { name: a, address: 127.0.0.1:0, routes: *r }\nlisteners: [";
  for (int i = 0; i < 600; ++i) fan += "*l, ";
  fan += "]\n";
  auto r = cfg::load_string(yaml + fan, "x.yaml");
  CHECK_FALSE(r.value);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() ==
        "x.yaml: the configuration is too large (aliases expand to more than 500000 nodes)");
  // yaml-cpp 0.7 alone loops forever, allocating, on these (jbeder/yaml-cpp#1040).
  CHECK(error_of(",") == "test.yaml:1:1: invalid YAML: unexpected ','");
  CHECK(error_of(",orkers: auto\nlisteners: []\n") == "test.yaml:1:1: invalid YAML: unexpected ','");
  CHECK_FALSE(cfg::load_string("- !+(.,.)", "x.yaml").errors.empty());
  // Binary garbage.
  CHECK_FALSE(cfg::load_string(std::string("\0\xff\xfe:\x01", 5), "x.yaml").errors.empty());
}

TEST_CASE("load_file", "[config]") {
  SECTION("a file that does not exist gives one diagnostic naming it") {
    auto r = cfg::load_file("/nonexistent/sluice.yaml");
    CHECK_FALSE(r.value);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].file == "/nonexistent/sluice.yaml");
    CHECK(r.errors[0].line == 0);
    CHECK(r.errors[0].to_string() ==
          "/nonexistent/sluice.yaml: cannot open: No such file or directory");
  }
  SECTION("a directory") {
    auto r = cfg::load_file("/");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == "/: cannot read: is a directory");
  }
  SECTION("a real file") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("sluice-config-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path file = dir / "sluice.yaml";
    { std::ofstream(file) << full_config; }
    auto good = cfg::load_file(file.string());
    { std::ofstream(file) << "workers: 9999\n"; }
    auto bad = cfg::load_file(file.string());
    fs::remove_all(dir);

    CHECK(good.errors.empty());
    REQUIRE(good.value);
    CHECK(good.value->file == file.string());
    CHECK(good.value->listeners.size() == 2);
    REQUIRE(bad.errors.size() == 2);
    CHECK(bad.errors[0].to_string() == file.string() + ":1:1: listeners: missing required key 'listeners'");
    CHECK(bad.errors[1].to_string() == file.string() + ":1:10: workers: must be between 1 and 256, got 9999");
  }
}

TEST_CASE("the complete example in docs/configuration.md is valid", "[config]") {
  namespace fs = std::filesystem;
  const fs::path doc = fs::path(__FILE__).parent_path() / "../../../docs/configuration.md";
  std::ifstream in(doc);
  REQUIRE(in);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto section = text.find("## Complete example");
  REQUIRE(section != std::string::npos);
  auto begin = text.find("```yaml\n", section);
  REQUIRE(begin != std::string::npos);
  begin += 8;
  auto end = text.find("```", begin);
  REQUIRE(end != std::string::npos);
  auto r = cfg::load_string(text.substr(begin, end - begin), "configuration.md");
  for (const auto& d : r.errors) FAIL_CHECK(d.to_string());
  REQUIRE(r.value);
  CHECK(r.value->listeners.size() == 2);
  CHECK(r.value->clusters.size() == 4);
}
