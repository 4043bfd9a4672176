// Configuration of etcd discovery: clusters[].discovery.etcd.
#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

namespace cfg = sluice::config;

namespace {

std::vector<std::string> errors_of(const std::string& yaml) {
  auto r = cfg::load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& d : r.errors) out.push_back(d.to_string());
  CHECK(r.value.has_value() == out.empty());
  return out;
}

std::string with_cluster(const std::string& cluster_yaml) {
  return "listeners:\n"
         "  - { name: web, address: 127.0.0.1:0, routes: [ { cluster: web } ] }\n"
         "clusters:\n" +
         cluster_yaml;
}

}  // namespace

TEST_CASE("etcd discovery with every key", "[config][etcd]") {
  auto r = cfg::load_string(with_cluster("  - name: web\n"
                                         "    endpoints: [ 127.0.0.1:8001 ]\n"
                                         "    discovery:\n"
                                         "      etcd:\n"
                                         "        endpoints: [ 127.0.0.1:2379, 127.0.0.1:22379 ]\n"
                                         "        prefix: /services/web/\n"
                                         "        tls: { ca: /etc/etcd/ca.pem, cert: /etc/etcd/c.pem, key: /etc/etcd/c.key }\n"
                                         "        username: sluice\n"
                                         "        password: secret\n"
                                         "        persist: /var/lib/sluice/web.json\n"),
                            "test.yaml");
  REQUIRE(r.errors.empty());
  const auto& c = r.value->clusters.at(0);
  CHECK(c.endpoints.size() == 1);  // static endpoints and discovery together: merged
  REQUIRE(c.discovery);
  const auto& d = *c.discovery;
  CHECK(d.endpoints == std::vector<std::string>{"127.0.0.1:2379", "127.0.0.1:22379"});
  CHECK(d.prefix == "/services/web/");
  REQUIRE(d.tls);
  CHECK(d.tls->ca == "/etc/etcd/ca.pem");
  CHECK(d.tls->cert == "/etc/etcd/c.pem");
  CHECK(d.tls->key == "/etc/etcd/c.key");
  CHECK(d.username == "sluice");
  CHECK(d.password == "secret");
  CHECK(d.persist == "/var/lib/sluice/web.json");
}

TEST_CASE("etcd discovery defaults", "[config][etcd]") {
  auto r = cfg::load_string(with_cluster("  - name: web\n"
                                         "    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ] } }\n"),
                            "test.yaml");
  REQUIRE(r.errors.empty());
  const auto& d = *r.value->clusters.at(0).discovery;
  CHECK(d.prefix == "/nodes/");
  CHECK_FALSE(d.tls);
  CHECK(d.username.empty());
  CHECK(d.persist.empty());
  CHECK(r.value->clusters.at(0).endpoints.empty());
}

TEST_CASE("etcd discovery errors", "[config][etcd]") {
  CHECK(errors_of(with_cluster("  - name: web\n"
                               "    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ], tls: { cert: c.pem } } }\n")) ==
        std::vector<std::string>{"test.yaml:5:62: clusters[0].discovery.etcd.tls.key: missing required key "
                                 "'key' (the private key of 'cert')"});
  CHECK(errors_of(with_cluster("  - name: web\n"
                               "    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ], password: x } }\n")) ==
        std::vector<std::string>{"test.yaml:5:57: clusters[0].discovery.etcd.password: 'password' needs 'username'"});
  CHECK(errors_of(with_cluster("  - name: web\n"
                               "    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ], persist: '' } }\n")) ==
        std::vector<std::string>{"test.yaml:5:66: clusters[0].discovery.etcd.persist: must not be empty"});
  CHECK(errors_of(with_cluster("  - name: web\n"
                               "    discovery: { etcd: { endpoints: [ 127.0.0.1:2379 ], tls: { cafile: x } } }\n")) ==
        std::vector<std::string>{"test.yaml:5:64: clusters[0].discovery.etcd.tls.cafile: unknown key 'cafile'"});
}
