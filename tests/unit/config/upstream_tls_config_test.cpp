#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace cfg = sluice::config;

namespace {

std::string with_cluster(const std::string& protocol, const std::string& tls_block) {
  return "listeners:\n"
         "  - { name: web, address: 127.0.0.1:0, protocol: http, routes: [ { cluster: up } ] }\n"
         "clusters:\n"
         "  - name: up\n"
         "    protocol: " + protocol + "\n"
         "    endpoints: [ 127.0.0.1:50051 ]\n" + tls_block;
}

std::vector<std::string> errors_of(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("protocol h2 clusters get TLS defaults", "[config][tls]") {
  auto r = cfg::load_string(with_cluster("h2", ""), "test.yaml");
  REQUIRE(r.errors.empty());
  const auto& c = r.value->clusters[0];
  REQUIRE(c.tls);
  CHECK(c.tls->ca.empty());
  CHECK(c.tls->server_name.empty());
  CHECK(c.tls->verify);
  CHECK(c.tls->cert.empty());
  auto plain = cfg::load_string(with_cluster("h2c", ""), "test.yaml");
  REQUIRE(plain.errors.empty());
  CHECK_FALSE(plain.value->clusters[0].tls);
}

TEST_CASE("a cluster tls block is read", "[config][tls]") {
  std::string ca = "upstream_tls_config_test_ca.pem";
  { std::ofstream(ca) << "not checked here\n"; }
  auto r = cfg::load_string(with_cluster("h2", "    tls: { ca: " + ca +
                                                   ", server_name: backend.internal, verify: false }\n"),
                            "test.yaml");
  std::remove(ca.c_str());
  REQUIRE(r.errors.empty());
  const auto& t = *r.value->clusters[0].tls;
  CHECK(t.ca == ca);
  CHECK(t.server_name == "backend.internal");
  CHECK_FALSE(t.verify);
}

TEST_CASE("cluster tls errors name the key", "[config][tls]") {
  auto e = errors_of(with_cluster("http1", "    tls: { verify: true }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("test.yaml:7:5: clusters[0].tls: 'tls' is only used by protocol: h2") == 0);

  e = errors_of(with_cluster("h2", "    tls: { ca: /nonexistent/ca.pem }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("clusters[0].tls.ca: cannot read '/nonexistent/ca.pem'") != std::string::npos);

  // A FIFO with no writer is refused, not waited on forever.
  std::string fifo = "upstream_tls_config_test_fifo";
  std::remove(fifo.c_str());
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  e = errors_of(with_cluster("h2", "    tls: { ca: " + fifo + " }\n"));
  std::remove(fifo.c_str());
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("clusters[0].tls.ca: cannot read '" + fifo + "': not a regular file") !=
        std::string::npos);

  e = errors_of(with_cluster("h2", "    tls: { cert: /nonexistent/c.pem }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("clusters[0].tls.key: missing required key 'key'") != std::string::npos);

  e = errors_of(with_cluster("h2", "    tls: { server_name: 'bad name' }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("clusters[0].tls.server_name:") != std::string::npos);

  e = errors_of(with_cluster("h2", "    tls: { verify: maybe }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("clusters[0].tls.verify:") != std::string::npos);

  e = errors_of(with_cluster("h2", "    tls: { sni: x }\n"));
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("clusters[0].tls.sni:") != std::string::npos);
}
