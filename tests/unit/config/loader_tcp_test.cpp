#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace cfg = sluice::config;

namespace {

std::vector<std::string> tcp_errors(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  CHECK(r.value.has_value() == out.empty());
  return out;
}

std::string tcp_error(const std::string& yaml) {
  auto e = tcp_errors(yaml);
  REQUIRE(e.size() == 1);
  return e.front();
}

// A tcp listener whose `tcp:` block is `block` (already indented by 6), plus two clusters.
std::string with_tcp(const std::string& block, const std::string& listener_extra = "    cluster: pg\n") {
  return "listeners:\n"
         "  - name: db\n"
         "    address: 127.0.0.1:0\n"
         "    protocol: tcp\n" +
         listener_extra + "    tcp:\n" + block +
         "clusters:\n"
         "  - { name: pg, endpoints: [ 127.0.0.1:5432 ] }\n"
         "  - { name: web, endpoints: [ 127.0.0.1:8443 ], max_connections_per_backend: 100 }\n";
}

}  // namespace

TEST_CASE("tcp listener options are read", "[config][tcp]") {
  auto r = cfg::load_string(with_tcp("      idle_timeout: 30s\n"
                                     "      max_lifetime: 1h\n"
                                     "      header_timeout: 2s\n"
                                     "      max_connections: 500\n"
                                     "      on_limit: queue\n"
                                     "      queue_timeout: 250ms\n"
                                     "      relay: buffer\n"
                                     "      buffer_size: 256k\n"
                                     "      pipe_size: 1m\n"
                                     "      proxy_protocol:\n"
                                     "        send: v2\n"
                                     "        accept: true\n"
                                     "        trusted: [ 127.0.0.1/32, 10.0.0.0/8, \"::1\" ]\n"
                                     "      sni_routes:\n"
                                     "        - { server_name: db.example.com, cluster: pg }\n"
                                     "        - { server_name: \"*.Example.com\", cluster: web }\n"),
                            "test.yaml");
  REQUIRE(r.errors.empty());
  const auto& l = r.value->listeners.at(0);
  const auto& t = l.tcp;
  CHECK(l.cluster == "pg");
  CHECK(t.idle_timeout == 30s);
  CHECK(t.max_lifetime == 1h);
  CHECK(t.header_timeout == 2s);
  CHECK(t.max_connections == 500);
  CHECK(t.on_limit == cfg::tcp_options::limit_action::queue);
  CHECK(t.queue_timeout == 250ms);
  CHECK(t.relay == cfg::tcp_options::relay_mode::buffer);
  CHECK(t.buffer_size == 256 * 1024);
  CHECK(t.pipe_size == 1024 * 1024);
  CHECK(t.proxy.send == cfg::proxy_protocol::version::v2);
  CHECK(t.proxy.accept);
  REQUIRE(t.proxy.trusted.size() == 3);
  CHECK(t.proxy.trusted[1].to_string() == "10.0.0.0/8");
  CHECK(t.proxy.trusted[2].to_string() == "::1/128");
  REQUIRE(t.sni_routes.size() == 2);
  CHECK(t.sni_routes[1].server_name == "*.example.com");
  CHECK(t.sni_routes[1].cluster == "web");
  CHECK(r.value->clusters.at(1).max_connections_per_backend == 100);
  CHECK(r.value->clusters.at(0).max_connections_per_backend == 0);
}

TEST_CASE("tcp listener defaults", "[config][tcp]") {
  auto r = cfg::load_string(
      "listeners: [ { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: pg } ]\n"
      "clusters: [ { name: pg, endpoints: [ 127.0.0.1:5432 ] } ]\n",
      "test.yaml");
  REQUIRE(r.errors.empty());
  const auto& t = r.value->listeners.at(0).tcp;
  CHECK(t.idle_timeout == 10min);
  CHECK(t.max_lifetime == 0ms);
  CHECK(t.max_connections == 0);
  CHECK(t.on_limit == cfg::tcp_options::limit_action::refuse);
  CHECK(t.relay == cfg::tcp_options::relay_mode::automatic);
  CHECK(t.buffer_size == 65536);
  CHECK(t.pipe_size == 262144);
  CHECK(t.proxy.send == cfg::proxy_protocol::version::none);
  CHECK_FALSE(t.proxy.accept);
  CHECK(t.sni_routes.empty());
}

TEST_CASE("sni_routes make the listener's cluster optional", "[config][tcp]") {
  auto e = tcp_errors(with_tcp("      sni_routes: [ { server_name: a.example.com, cluster: web } ]\n", ""));
  CHECK(e.empty());
  CHECK(tcp_error(with_tcp("      idle_timeout: 1s\n", "")) ==
        "test.yaml:2:5: listeners[0].cluster: missing required key 'cluster'");
}

TEST_CASE("tcp listener options are validated with positions", "[config][tcp]") {
  CHECK(tcp_error(with_tcp("      relay: zerocopy\n")) ==
        "test.yaml:7:14: listeners[0].tcp.relay: expected one of auto, splice or buffer, got 'zerocopy'");
  auto r = cfg::load_string(with_tcp("      relay: auto\n"), "test.yaml");
  REQUIRE(r.errors.empty());
  CHECK(r.value->listeners.at(0).tcp.relay == cfg::tcp_options::relay_mode::automatic);
  CHECK(tcp_error(with_tcp("      on_limit: drop\n")) ==
        "test.yaml:7:17: listeners[0].tcp.on_limit: expected one of refuse or queue, got 'drop'");
  CHECK(tcp_error(with_tcp("      idle_timout: 1s\n")) ==
        "test.yaml:7:7: listeners[0].tcp.idle_timout: unknown key 'idle_timout' (did you mean 'idle_timeout'?)");
  CHECK(tcp_error(with_tcp("      buffer_size: 1k\n")) ==
        "test.yaml:7:20: listeners[0].tcp.buffer_size: must be between 4096 and 1048576 bytes, got 1k");
  CHECK(tcp_error(with_tcp("      pipe_size: 2m\n")) ==
        "test.yaml:7:18: listeners[0].tcp.pipe_size: must be between 4096 and 1048576 bytes, got 2m");
  CHECK(tcp_error(with_tcp("      idle_timeout: 0s\n")) ==
        "test.yaml:7:21: listeners[0].tcp.idle_timeout: must be greater than 0s");
}

TEST_CASE("proxy_protocol trusted sources are CIDRs, reported at their position", "[config][tcp]") {
  CHECK(tcp_error(with_tcp("      proxy_protocol: { accept: true, trusted: [ 127.0.0.1/32, 10.0.0.0/33 ] }\n")) ==
        "test.yaml:7:64: listeners[0].tcp.proxy_protocol.trusted[1]: invalid address or prefix "
        "'10.0.0.0/33': prefix length must be 0..32");
  CHECK(tcp_error(with_tcp("      proxy_protocol: { accept: true, trusted: [ 10.1.0.0/8 ] }\n")) ==
        "test.yaml:7:50: listeners[0].tcp.proxy_protocol.trusted[0]: invalid address or prefix "
        "'10.1.0.0/8': address has bits set beyond the prefix length (write the network address)");
  CHECK(tcp_error(with_tcp("      proxy_protocol: { accept: true, trusted: [ lb.example.com ] }\n")) ==
        "test.yaml:7:50: listeners[0].tcp.proxy_protocol.trusted[0]: invalid address or prefix "
        "'lb.example.com': not a numeric IPv4 or IPv6 address");
  CHECK(tcp_error(with_tcp("      proxy_protocol: { accept: true }\n")).find(
            "listeners[0].tcp.proxy_protocol.trusted: accept: true needs the 'trusted' sources") !=
        std::string::npos);
  CHECK(tcp_error(with_tcp("      proxy_protocol: { trusted: [ 10.0.0.0/8 ] }\n")) ==
        "test.yaml:7:25: listeners[0].tcp.proxy_protocol.trusted: 'trusted' is only used with accept: true");
  CHECK(tcp_error(with_tcp("      proxy_protocol: { send: v3 }\n")) ==
        "test.yaml:7:31: listeners[0].tcp.proxy_protocol.send: expected one of none, v1 or v2, got 'v3' (did you mean 'v1'?)");
}

TEST_CASE("sni_routes are validated", "[config][tcp]") {
  CHECK(tcp_error(with_tcp("      sni_routes: [ { server_name: a.example.com, cluster: nope } ]\n")) ==
        "test.yaml:7:60: listeners[0].tcp.sni_routes[0].cluster: unknown cluster 'nope'");
  CHECK(tcp_error(with_tcp("      sni_routes: [ { server_name: \"a.*.com\", cluster: pg } ]\n"))
            .find("listeners[0].tcp.sni_routes[0].server_name: expected a host name") != std::string::npos);
  CHECK(tcp_error(with_tcp("      sni_routes:\n"
                           "        - { server_name: a.example.com, cluster: pg }\n"
                           "        - { server_name: A.example.com, cluster: web }\n")) ==
        "test.yaml:9:26: listeners[0].tcp.sni_routes[1].server_name: duplicate server_name "
        "'A.example.com' (first at line 8)");
  CHECK(tcp_error(with_tcp("      sni_routes: []\n")) ==
        "test.yaml:7:19: listeners[0].tcp.sni_routes: needs at least one route (or leave 'sni_routes' out)");
}

TEST_CASE("tcp options on an http listener are an error", "[config][tcp]") {
  CHECK(tcp_error("listeners:\n"
                  "  - name: web\n"
                  "    address: 127.0.0.1:0\n"
                  "    routes: [ { cluster: pg } ]\n"
                  "    tcp: { idle_timeout: 1s }\n"
                  "clusters: [ { name: pg, endpoints: [ 127.0.0.1:5432 ] } ]\n") ==
        "test.yaml:5:5: listeners[0].tcp: 'tcp' options are for listeners with protocol: tcp");
  CHECK(tcp_error("listeners: [ { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: pg } ]\n"
                  "clusters: [ { name: pg, endpoints: [ 127.0.0.1:5432 ], max_connections_per_backend: -1 } ]\n") ==
        "test.yaml:2:85: clusters[0].max_connections_per_backend: must be between 0 and 10000000, got -1");
}
