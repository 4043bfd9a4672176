#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sluice/config/diff.hpp"

namespace cfg = sluice::config;

namespace {

const std::string listeners =
    "listeners:\n"
    "  - { name: web, address: 127.0.0.1:0, routes: [ { direct: { body: hi } } ] }\n";

std::vector<std::string> errors_of(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("upgrade_socket is off by default", "[config][upgrade]") {
  auto r = cfg::load_string(listeners, "test.yaml");
  REQUIRE(r.value);
  CHECK(r.value->upgrade_socket.empty());
}

TEST_CASE("upgrade_socket takes an absolute path", "[config][upgrade]") {
  auto r = cfg::load_string("upgrade_socket: /run/sluice/upgrade.sock\n" + listeners, "test.yaml");
  REQUIRE(r.errors.empty());
  REQUIRE(r.value);
  CHECK(r.value->upgrade_socket == "/run/sluice/upgrade.sock");

  auto empty = cfg::load_string("upgrade_socket: \"\"\n" + listeners, "test.yaml");
  REQUIRE(empty.value);
  CHECK(empty.value->upgrade_socket.empty());
}

TEST_CASE("upgrade_socket rejects relative, long and non-scalar values", "[config][upgrade]") {
  CHECK(errors_of("upgrade_socket: run/upgrade.sock\n" + listeners) ==
        std::vector<std::string>{"test.yaml:1:17: upgrade_socket: must be an absolute path of at "
                                 "most 107 bytes, got 'run/upgrade.sock'"});
  const std::string long_path = "/" + std::string(107, 'a');
  auto e = errors_of("upgrade_socket: " + long_path + "\n" + listeners);
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("at most 107 bytes") != std::string::npos);
  CHECK(errors_of("upgrade_socket: /" + std::string(106, 'a') + "\n" + listeners).empty());
  auto m = errors_of("upgrade_socket: { path: /x }\n" + listeners);
  REQUIRE(m.size() == 1);
  CHECK(m[0].rfind("test.yaml:1:17: upgrade_socket:", 0) == 0);
}

TEST_CASE("upgrade_socket reserves the listener name admin", "[config][upgrade]") {
  const std::string admin_listener =
      "listeners:\n"
      "  - { name: admin, address: 127.0.0.1:0, routes: [ { direct: { body: hi } } ] }\n";
  CHECK(errors_of(admin_listener).empty());
  auto e = errors_of("upgrade_socket: /run/u.sock\n" + admin_listener);
  REQUIRE(e.size() == 1);
  CHECK(e[0].rfind("test.yaml:1:17: upgrade_socket: a listener named 'admin'", 0) == 0);
}

TEST_CASE("diff reports an upgrade_socket change", "[config][upgrade][diff]") {
  auto a = cfg::load_string(listeners, "a.yaml");
  auto b = cfg::load_string("upgrade_socket: /run/u.sock\n" + listeners, "b.yaml");
  REQUIRE(a.value);
  REQUIRE(b.value);
  auto changes = cfg::diff(*a.value, *b.value);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].to_string().find("upgrade_socket") != std::string::npos);
}
