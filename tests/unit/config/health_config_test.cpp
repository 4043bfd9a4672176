// Configuration of cluster health: clusters[].health, outlier, slow_start, panic.
#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

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

std::string error_of(const std::string& yaml) {
  auto e = errors_of(yaml);
  REQUIRE(e.size() == 1);
  return e.front();
}

std::string with_cluster(const std::string& cluster_yaml) {
  return "listeners:\n"
         "  - { name: web, address: 127.0.0.1:0, routes: [ { cluster: web } ] }\n"
         "clusters:\n"
         "  - name: web\n"
         "    endpoints: [ 127.0.0.1:8001 ]\n" +
         cluster_yaml;
}

cfg::cluster load_cluster(const std::string& cluster_yaml) {
  auto r = cfg::load_string(with_cluster(cluster_yaml), "test.yaml");
  for (const auto& d : r.errors) FAIL_CHECK(d.to_string());
  REQUIRE(r.value);
  return r.value->clusters.at(0);
}

}  // namespace

TEST_CASE("health, outlier, slow_start and panic defaults", "[config][health]") {
  auto c = load_cluster("");
  CHECK(c.health.type == cfg::health_check::kind::none);
  CHECK(c.health.unhealthy_interval == 0ms);
  CHECK(c.health.method == "GET");
  REQUIRE(c.health.expect_status.size() == 1);
  CHECK(c.health.expect_status[0].lo == 200);
  CHECK(c.health.expect_status[0].hi == 399);
  CHECK_FALSE(c.outlier.enabled);
  CHECK(c.slow_start == 0ms);
  CHECK(c.panic == cfg::panic_mode::fail);

  auto o = load_cluster("    outlier:\n");  // present but empty: on, with defaults
  CHECK(o.outlier.enabled);
  CHECK(o.outlier.consecutive == 5);
  CHECK(o.outlier.count_mask == 0b01110);
  CHECK(o.outlier.base_ejection == 30s);
  CHECK(o.outlier.max_ejection == 300s);
  CHECK(o.outlier.max_ejection_percent == 50);
}

TEST_CASE("every health key", "[config][health]") {
  auto c = load_cluster(
      "    health:\n"
      "      type: http\n"
      "      interval: 5s\n"
      "      unhealthy_interval: 1s\n"
      "      timeout: 2s\n"
      "      healthy: 3\n"
      "      unhealthy: 4\n"
      "      jitter: 10%\n"
      "      method: HEAD\n"
      "      path: /healthz?full=1\n"
      "      host: health.example.com\n"
      "      expect_status: [ 200-299, 304 ]\n"
      "    outlier:\n"
      "      consecutive: 3\n"
      "      count: [ connect_failure, http_5xx ]\n"
      "      base_ejection: 10s\n"
      "      max_ejection: 1m\n"
      "      max_ejection_percent: 34\n"
      "    slow_start: 30s\n"
      "    panic: spread\n");
  CHECK(c.health.type == cfg::health_check::kind::http);
  CHECK(c.health.interval == 5s);
  CHECK(c.health.unhealthy_interval == 1s);
  CHECK(c.health.timeout == 2s);
  CHECK(c.health.healthy == 3);
  CHECK(c.health.unhealthy == 4);
  CHECK(c.health.jitter_fraction == Approx(0.1));
  CHECK(c.health.jitter == 0ms);
  CHECK(c.health.method == "HEAD");
  CHECK(c.health.path == "/healthz?full=1");
  CHECK(c.health.host == "health.example.com");
  REQUIRE(c.health.expect_status.size() == 2);
  CHECK(c.health.expect_status[0].lo == 200);
  CHECK(c.health.expect_status[0].hi == 299);
  CHECK(c.health.expect_status[1].lo == 304);
  CHECK(c.health.expect_status[1].hi == 304);
  CHECK(c.outlier.enabled);
  CHECK(c.outlier.consecutive == 3);
  CHECK(c.outlier.count_mask == ((1 << 1) | (1 << 4)));
  CHECK(c.outlier.base_ejection == 10s);
  CHECK(c.outlier.max_ejection == 60s);
  CHECK(c.outlier.max_ejection_percent == 34);
  CHECK(c.slow_start == 30s);
  CHECK(c.panic == cfg::panic_mode::spread);
}

TEST_CASE("jitter as a fraction, a percentage or a duration", "[config][health]") {
  CHECK(load_cluster("    health: { type: tcp, jitter: 0.25 }\n").health.jitter_fraction == Approx(0.25));
  auto d = load_cluster("    health: { type: tcp, jitter: 300ms }\n").health;
  CHECK(d.jitter == 300ms);
  CHECK(d.jitter_fraction == 0);
  CHECK(error_of(with_cluster("    health: { type: tcp, jitter: 1.5 }\n")) ==
        "test.yaml:6:34: clusters[0].health.jitter: a jitter fraction must be between 0 and 1 (0% and 100%), got 1.5");
  CHECK(error_of(with_cluster("    health: { type: tcp, jitter: lots }\n")) ==
        "test.yaml:6:34: clusters[0].health.jitter: expected a fraction like 0.1, a percentage like 10% or a "
        "duration like 200ms, got 'lots'");
  CHECK(error_of(with_cluster("    health: { type: tcp, jitter: -0.1 }\n")).find("expected a fraction") !=
        std::string::npos);
}

TEST_CASE("expect_status and expect_body", "[config][health]") {
  auto c = load_cluster("    health: { type: http, expect_status: 204, expect_body: ok }\n");
  REQUIRE(c.health.expect_status.size() == 1);
  CHECK(c.health.expect_status[0].lo == 204);
  CHECK(c.health.expect_status[0].hi == 204);
  CHECK(c.health.expect_body == "ok");
  CHECK(load_cluster("    health: { type: http, expect_status: 200-399 }\n").health.expect_status[0].hi == 399);

  CHECK(error_of(with_cluster("    health: { type: http, expect_status: 399-200 }\n")) ==
        "test.yaml:6:42: clusters[0].health.expect_status: a status range must lie within 100-599 with "
        "low <= high, got 399-200");
  CHECK(error_of(with_cluster("    health: { type: http, expect_status: [ 200, 2xx ] }\n")) ==
        "test.yaml:6:49: clusters[0].health.expect_status[1]: expected a status like 200 or a range like "
        "200-399, got '2xx'");
  CHECK(error_of(with_cluster("    health: { type: http, expect_status: [] }\n")).find("needs at least one") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    health: { type: http, expect_status: 600 }\n")).find("100-599") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    health: { type: http, method: HEAD, expect_body: ok }\n")) ==
        "test.yaml:6:41: clusters[0].health.expect_body: a HEAD request has no body to match");
}

TEST_CASE("http-only keys on another check type", "[config][health]") {
  CHECK(error_of(with_cluster("    health: { type: tcp, expect_body: ok }\n")) ==
        "test.yaml:6:26: clusters[0].health.expect_body: 'expect_body' is only used by type http");
  CHECK(error_of(with_cluster("    health: { type: tcp, host: a.example }\n")) ==
        "test.yaml:6:26: clusters[0].health.host: 'host' is only used by type http");
  CHECK(error_of(with_cluster("    health: { type: http, method: get }\n")).find("expected an HTTP method") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    health: { type: http, path: '/a b' }\n")).find("spaces") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    health: { type: http, unhealthy_interval: 0s }\n")).find("greater than 0s") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    health: { type: http, fall: 3 }\n")).find("unknown key 'fall'") !=
        std::string::npos);
}

TEST_CASE("outlier, slow_start and panic errors", "[config][health]") {
  CHECK(error_of(with_cluster("    outlier: { count: [ connect_failure, 5xx ] }\n")).find(
            "http_5xx, got '5xx'") != std::string::npos);
  CHECK(error_of(with_cluster("    outlier: { count: [] }\n")).find("needs at least one") != std::string::npos);
  CHECK(error_of(with_cluster("    outlier: { base_ejection: 1m, max_ejection: 30s }\n")) ==
        "test.yaml:6:49: clusters[0].outlier.max_ejection: max_ejection must be at least base_ejection");
  CHECK(error_of(with_cluster("    outlier: { max_ejection_percent: 0 }\n")).find("between 1 and 100") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    outlier: { consecutive: 0 }\n")).find("between 1 and 1000") !=
        std::string::npos);
  CHECK(error_of(with_cluster("    slow_start: 30\n")).find("a bare number is ambiguous") != std::string::npos);
  CHECK(error_of(with_cluster("    panic: open\n")) ==
        "test.yaml:6:12: clusters[0].panic: expected one of fail or spread, got 'open'");
  CHECK(load_cluster("    slow_start: 0s\n").slow_start == 0ms);
}

TEST_CASE("passive health is on by default for discovered clusters only", "[config][health]") {
  const std::string base = R"(
listeners:
  - { name: web, address: 127.0.0.1:0, routes: [ { cluster: a }, { match: { path_prefix: /b }, cluster: b } ] }
clusters:
  - { name: a, endpoints: [ 127.0.0.1:8001 ] }
  - name: b
    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ] } }
)";
  auto r = sluice::config::load_string(base, "t.yaml");
  REQUIRE(r.errors.empty());
  CHECK_FALSE(r.value->clusters[0].outlier.enabled);
  CHECK(r.value->clusters[1].outlier.enabled);

  auto off = sluice::config::load_string(base + "    outlier: { enabled: false }\n", "t.yaml");
  REQUIRE(off.errors.empty());
  CHECK_FALSE(off.value->clusters[1].outlier.enabled);
}

TEST_CASE("grpc health check service", "[config][health]") {
  auto c = load_cluster("    protocol: h2c\n    health: { type: grpc, service: hello.Greeter }\n");
  CHECK(c.health.type == cfg::health_check::kind::grpc);
  CHECK(c.health.service == "hello.Greeter");
  CHECK(load_cluster("    protocol: h2c\n    health: { type: grpc, service: '' }\n").health.service.empty());
  CHECK(load_cluster("    protocol: h2c\n    health: { type: grpc }\n").health.service.empty());
  CHECK(error_of(with_cluster("    health: { type: tcp, service: x }\n")) ==
        "test.yaml:6:26: clusters[0].health.service: 'service' is only used by type grpc");
}
