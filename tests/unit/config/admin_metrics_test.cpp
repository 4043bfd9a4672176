// Loader tests for the `admin` and `metrics` sections.
#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace cfg = sluice::config;

namespace {

const std::string listeners =
    "listeners: [ { name: a, address: 127.0.0.1:0, routes: [ { direct: {} } ] } ]\n";

std::vector<std::string> admin_errors(const std::string& yaml) {
  auto r = cfg::load_string(yaml + listeners, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  CHECK(r.value.has_value() == out.empty());
  return out;
}

}  // namespace

TEST_CASE("admin: token and loopback rule", "[config][admin]") {
  auto r = cfg::load_string("admin: { address: 127.0.0.1:0, token: 0123456789abcdef }\n" + listeners,
                            "test.yaml");
  REQUIRE(r.value);
  CHECK(r.value->admin.token == "0123456789abcdef");
  CHECK(r.value->metrics.enabled);

  CHECK(admin_errors("admin: { address: 127.0.0.1:9901 }\n").empty());
  CHECK(admin_errors("admin: { address: 127.9.9.9:9901 }\n").empty());
  CHECK(admin_errors("admin: { address: '[::1]:9901' }\n").empty());
  CHECK(admin_errors("admin: { address: localhost:9901 }\n").empty());
  CHECK(admin_errors("admin: { address: 0.0.0.0:9901, token: 0123456789abcdef }\n").empty());

  auto e = admin_errors("admin: { address: 0.0.0.0:9901 }\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] ==
        "test.yaml:1:19: admin.address: the admin listener on a non-loopback address "
        "'0.0.0.0:9901' needs admin.token (or listen on 127.0.0.1 / [::1])");
  CHECK(admin_errors("admin: { address: '[::]:9901' }\n").size() == 1);
  CHECK(admin_errors("admin: { address: example.com:9901 }\n").size() == 1);

  e = admin_errors("admin: { address: 127.0.0.1:9901, token: short }\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] ==
        "test.yaml:1:42: admin.token: the token must be 16 to 256 visible ASCII characters (no "
        "spaces)");
  CHECK(admin_errors("admin: { address: 127.0.0.1:9901, token: 'with space 0123456789' }\n").size() == 1);
  // A bad token off loopback is reported once, as a bad token.
  CHECK(admin_errors("admin: { address: 0.0.0.0:9901, token: x }\n").size() == 1);
  CHECK(admin_errors("admin: { address: 127.0.0.1:9901, tokn: 0123456789abcdef }\n").size() == 1);
}

TEST_CASE("metrics: enabled", "[config][metrics]") {
  auto r = cfg::load_string("metrics: { enabled: false }\n" + listeners, "test.yaml");
  REQUIRE(r.value);
  CHECK_FALSE(r.value->metrics.enabled);
  r = cfg::load_string("metrics: {}\n" + listeners, "test.yaml");
  REQUIRE(r.value);
  CHECK(r.value->metrics.enabled);
  auto e = admin_errors("metrics: { enabled: 2 }\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "test.yaml:1:21: metrics.enabled: expected true or false, got '2'");
  CHECK(admin_errors("metrics: { enable: true }\n").size() == 1);
}
