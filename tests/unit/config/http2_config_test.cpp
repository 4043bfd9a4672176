#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace cfg = sluice::config;

namespace {

std::string with_http2(const std::string& block, const std::string& protocol = "http") {
  std::string l = "listeners:\n"
                  "  - name: web\n"
                  "    address: 127.0.0.1:0\n"
                  "    protocol: " + protocol + "\n";
  l += protocol == "http" ? "    routes: [ { cluster: hello } ]\n" : "    cluster: hello\n";
  return l + "    http2:\n" + block +
         "clusters:\n"
         "  - { name: hello, protocol: h2c, endpoints: [ 127.0.0.1:50051 ] }\n";
}

std::vector<std::string> errors_of(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("http2 listener options are read", "[config][h2]") {
  auto r = cfg::load_string(with_http2("      max_concurrent_streams: 50\n"
                                       "      max_header_list_size: 16k\n"
                                       "      stream_window: 1m\n"
                                       "      reset_burst: 200\n"
                                       "      reset_rate: 10\n"
                                       "      max_connection_age: 10m\n"),
                            "test.yaml");
  REQUIRE(r.value);
  const auto& h = r.value->listeners.at(0).http2;
  CHECK(h.max_concurrent_streams == 50);
  CHECK(h.max_header_list_size == 16384);
  CHECK(h.stream_window == 1024u * 1024);
  CHECK(h.reset_burst == 200);
  CHECK(h.reset_rate == 10);
  CHECK(h.max_connection_age == 10min);
}

TEST_CASE("http2 defaults", "[config][h2]") {
  cfg::http2_options h;
  CHECK(h.max_concurrent_streams == 100);
  CHECK(h.max_header_list_size == 65536);
  CHECK(h.max_connection_age == 0ms);
}

TEST_CASE("bad http2 options are precise errors", "[config][h2]") {
  auto e = errors_of(with_http2("      max_concurrent_streams: 0\n"));
  REQUIRE(e.size() == 1);
  CHECK_THAT(e[0], Catch::Contains("listeners[0].http2.max_concurrent_streams"));
  e = errors_of(with_http2("      stream_window: 1k\n"));
  REQUIRE(e.size() == 1);
  CHECK_THAT(e[0], Catch::Contains("stream_window"));
  e = errors_of(with_http2("      max_streams: 5\n"));
  REQUIRE(e.size() == 1);
  CHECK_THAT(e[0], Catch::Contains("max_streams"));
  e = errors_of(with_http2("      max_concurrent_streams: 5\n", "tcp"));
  REQUIRE(e.size() == 1);
  CHECK_THAT(e[0], Catch::Contains("protocol: http"));
}
