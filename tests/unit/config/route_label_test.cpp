#include "sluice/config/route_label.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sluice/config/loader.hpp"

namespace cfg = sluice::config;

namespace {

std::string with_routes(const std::string& routes) {
  return "listeners:\n"
         "  - name: web\n"
         "    address: 127.0.0.1:0\n"
         "    routes:\n" +
         routes +
         "  - { name: other, address: 127.0.0.1:0, routes: [ { name: api, cluster: web } ] }\n"
         "clusters:\n"
         "  - { name: web, endpoints: [ 127.0.0.1:8001 ] }\n";
}

std::vector<std::string> errors_of(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  CHECK(r.value.has_value() == out.empty());
  return out;
}

}  // namespace

TEST_CASE("route_label: the name, else host and path prefix", "[config][routes]") {
  cfg::route r;
  CHECK(cfg::route_label(r) == "/");
  r.match.path_prefix = "/v1/";
  CHECK(cfg::route_label(r) == "/v1/");
  r.match.host = "api.example.com";
  CHECK(cfg::route_label(r) == "api.example.com/v1/");
  r.match.host = "*.example.com";
  r.match.path_prefix = "/";
  CHECK(cfg::route_label(r) == "*.example.com/");
  r.name = "wildcard";
  CHECK(cfg::route_label(r) == "wildcard");
}

TEST_CASE("route names are read and unique per listener", "[config][routes]") {
  auto r = cfg::load_string(with_routes("      - { name: api, match: { path_prefix: /api/ }, cluster: web }\n"
                                        "      - { name: health, match: { path_prefix: /healthz }, direct: { status: 200 } }\n"
                                        "      - { match: { host: www.example.com }, cluster: web }\n"),
                            "test.yaml");
  INFO((r.errors.empty() ? std::string() : r.errors.front().to_string()));
  REQUIRE(r.value);
  const auto& routes = r.value->listeners[0].routes;
  REQUIRE(routes.size() == 3);
  CHECK(routes[0].name == "api");
  CHECK(routes[1].name == "health");
  CHECK(routes[2].name.empty());
  CHECK(cfg::route_label(routes[0]) == "api");
  CHECK(cfg::route_label(routes[2]) == "www.example.com/");
  // The same name on another listener is fine.
  CHECK(r.value->listeners[1].routes[0].name == "api");
}

TEST_CASE("duplicate or bad route names are config errors", "[config][routes]") {
  auto e = errors_of(with_routes("      - { name: api, match: { path_prefix: /a/ }, cluster: web }\n"
                                 "      - { name: api, match: { path_prefix: /b/ }, cluster: web }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "test.yaml:6:17: listeners[0].routes[1].name: duplicate route name 'api' (first at line 5)");

  e = errors_of(with_routes("      - { name: 'a b', cluster: web }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("listeners[0].routes[0].name: invalid name") != std::string::npos);

  e = errors_of(with_routes("      - { name: '', cluster: web }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("listeners[0].routes[0].name") != std::string::npos);
}
