#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "test_certs.hpp"

using namespace std::chrono_literals;
namespace cfg = sluice::config;
using sluice::test::make_certificate;
using sluice::test::temp_dir;
using sluice::test::write_text;

namespace {

std::string with_tls(const std::string& block, const std::string& protocol = "http") {
  std::string l = "listeners:\n"
                  "  - name: web\n"
                  "    address: 127.0.0.1:0\n"
                  "    protocol: " + protocol + "\n";
  l += protocol == "http" ? "    routes: [ { cluster: app } ]\n" : "    cluster: app\n";
  return l + "    tls:\n" + block +
         "clusters:\n"
         "  - { name: app, endpoints: [ 127.0.0.1:8001 ] }\n";
}

// Writes the configuration next to the certificates and loads it from there.
cfg::load_result load_in(const temp_dir& d, const std::string& yaml) {
  write_text(d.file("sluice.yaml"), yaml);
  return cfg::load_file(d.file("sluice.yaml"));
}

std::vector<std::string> errors_of(const cfg::load_result& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.to_string());
  return out;
}

struct certs {
  temp_dir dir;
  certs() {
    make_certificate(dir.file("a.pem"), dir.file("a.key"), "a.test", {"a.test"});
    make_certificate(dir.file("b.pem"), dir.file("b.key"), "b.test", {"b.test", "*.b.test"});
  }
};

}  // namespace

TEST_CASE("a tls block is read, relative paths against the file's directory", "[config][tls]") {
  certs c;
  auto r = load_in(c.dir, with_tls("      certificates:\n"
                                   "        - { cert: a.pem, key: a.key }\n"
                                   "        - cert: " + c.dir.file("b.pem") + "\n"
                                   "          key: b.key\n"
                                   "          server_names: [ B.test, \"*.b.test\" ]\n"
                                   "      alpn: [ http/1.1 ]\n"
                                   "      min_version: \"1.3\"\n"
                                   "      ciphers: ECDHE+AESGCM\n"
                                   "      handshake_timeout: 3s\n"));
  INFO(Catch::rangeToString(errors_of(r)));
  REQUIRE(r.value);
  const auto& t = r.value->listeners.at(0).tls;
  REQUIRE(t);
  REQUIRE(t->certificates.size() == 2);
  CHECK(t->certificates[0].cert == c.dir.file("a.pem"));
  CHECK(t->certificates[0].key == c.dir.file("a.key"));
  CHECK(t->certificates[0].server_names.empty());  // the certificate's own, when built
  CHECK(t->certificates[1].cert == c.dir.file("b.pem"));
  CHECK(t->certificates[1].key == c.dir.file("b.key"));
  CHECK(t->certificates[1].server_names == std::vector<std::string>{"b.test", "*.b.test"});
  CHECK(t->alpn == std::vector<std::string>{"http/1.1"});
  CHECK(t->min_version == cfg::tls_options::version::tls1_3);
  CHECK(t->ciphers == "ECDHE+AESGCM");
  CHECK(t->handshake_timeout == 3s);
}

TEST_CASE("tls defaults", "[config][tls]") {
  certs c;
  auto r = load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n"));
  INFO(Catch::rangeToString(errors_of(r)));
  REQUIRE(r.value);
  const auto& t = *r.value->listeners.at(0).tls;
  CHECK(t.alpn == std::vector<std::string>{"h2", "http/1.1"});
  CHECK(t.min_version == cfg::tls_options::version::tls1_2);
  CHECK(t.ciphers.empty());
  CHECK(t.handshake_timeout == 10s);
  CHECK_FALSE(r.value->find_cluster("app") == nullptr);
}

TEST_CASE("a listener without tls is cleartext", "[config][tls]") {
  auto r = cfg::load_string("listeners: [ { name: web, address: 127.0.0.1:0, routes: [ { cluster: app } ] } ]\n"
                            "clusters: [ { name: app, endpoints: [ 127.0.0.1:8001 ] } ]\n",
                            "test.yaml");
  REQUIRE(r.value);
  CHECK_FALSE(r.value->listeners.at(0).tls);
}

TEST_CASE("bad certificate files are errors with file, line and key path", "[config][tls]") {
  certs c;
  write_text(c.dir.file("junk.pem"), "junk\n");
  auto r = load_in(c.dir, with_tls("      certificates:\n"
                                   "        - { cert: missing.pem, key: a.key }\n"
                                   "        - { cert: junk.pem, key: a.key }\n"
                                   "        - { cert: a.pem, key: b.key }\n"));
  auto e = errors_of(r);
  INFO(Catch::rangeToString(e));
  REQUIRE(e.size() == 3);
  const std::string f = c.dir.file("sluice.yaml");
  CHECK_THAT(e[0], Catch::StartsWith(f + ":8:19: listeners[0].tls.certificates[0].cert: cannot read '" +
                                     c.dir.file("missing.pem") + "': No such file"));
  CHECK_THAT(e[1], Catch::StartsWith(f + ":9:19: listeners[0].tls.certificates[1].cert: '" +
                                     c.dir.file("junk.pem") + "' holds no PEM certificate"));
  CHECK_THAT(e[2], Catch::StartsWith(f + ":10:31: listeners[0].tls.certificates[2].key: the private key in '"));
  CHECK_THAT(e[2], Catch::Contains("does not match"));
}

TEST_CASE("tls value errors", "[config][tls]") {
  certs c;
  SECTION("unknown ALPN protocol") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n"
                                               "      alpn: [ h2, spdy/3 ]\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains(":8:19: listeners[0].tls.alpn[1]: expected one of h2 or http/1.1, got 'spdy/3'"));
  }
  SECTION("duplicate or empty ALPN") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n"
                                               "      alpn: [ h2, h2 ]\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("duplicate protocol 'h2'"));
    e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n"
                                          "      alpn: []\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls.alpn: needs at least one"));
  }
  SECTION("min_version") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n"
                                               "      min_version: \"1.1\"\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls.min_version: expected one of 1.2 or 1.3, got '1.1'"));
  }
  SECTION("ciphers") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n"
                                               "      ciphers: NOPE\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls.ciphers: OpenSSL selects no TLS 1.2 cipher"));
  }
  SECTION("no certificates") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: []\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls.certificates: needs at least one certificate"));
    e = errors_of(load_in(c.dir, with_tls("      alpn: [ h2 ]\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls.certificates: missing required key 'certificates'"));
  }
  SECTION("certificate entry keys") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem } ]\n")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls.certificates[0].key: missing required key 'key'"));
  }
  SECTION("server names") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates:\n"
                                               "        - { cert: a.pem, key: a.key, server_names: [ a.test ] }\n"
                                               "        - { cert: b.pem, key: b.key, server_names: [ A.test, 'x:1' ] }\n")));
    REQUIRE(e.size() == 2);
    CHECK_THAT(e[0], Catch::Contains("certificates[1].server_names[0]: server name 'a.test' is already served by"));
    CHECK_THAT(e[1], Catch::Contains("certificates[1].server_names[1]: expected a host name"));
  }
  SECTION("tls on a tcp listener") {
    auto e = errors_of(load_in(c.dir, with_tls("      certificates: [ { cert: a.pem, key: a.key } ]\n", "tcp")));
    REQUIRE(e.size() == 1);
    CHECK_THAT(e[0], Catch::Contains("listeners[0].tls: 'tls' terminates TLS on listeners with protocol: http"));
  }
}
