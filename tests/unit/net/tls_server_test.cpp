#include "net/tls_server.hpp"

#include <catch2/catch.hpp>

#include <openssl/ssl.h>

#include "../config/test_certs.hpp"

namespace cfg = sluice::config;
namespace net = sluice::net;
using sluice::test::make_certificate;
using sluice::test::temp_dir;

namespace {

cfg::listener tls_listener(const temp_dir& d) {
  make_certificate(d.file("a.pem"), d.file("a.key"), "a.test", {"a.test", "www.a.test"});
  make_certificate(d.file("b.pem"), d.file("b.key"), "b.test", {"b.test", "*.b.test"});
  make_certificate(d.file("c.pem"), d.file("c.key"), "c.test", {"c.test"});
  cfg::listener l;
  l.name = "web";
  cfg::tls_options t;
  t.certificates.push_back({d.file("a.pem"), d.file("a.key"), {}});
  t.certificates.push_back({d.file("b.pem"), d.file("b.key"), {}});
  t.certificates.push_back({d.file("c.pem"), d.file("c.key"), {"C.example", "*.c.example"}});
  l.tls = t;
  return l;
}

}  // namespace

TEST_CASE("certificates are chosen by exact name, then one-label wildcard, else the default",
          "[net][tls]") {
  temp_dir d;
  auto l = tls_listener(d);
  std::string err;
  auto s = net::make_tls_server(l, &err);
  REQUIRE(s);
  CHECK(err.empty());
  CHECK(s->select("a.test") == 0);
  CHECK(s->select("b.test") == 1);
  CHECK(s->select("B.Test.") == 1);
  CHECK(s->select("x.b.test") == 1);
  CHECK(s->select("y.x.b.test") == 0);  // a wildcard covers one label
  CHECK(s->select("c.example") == 2);
  CHECK(s->select("any.c.example") == 2);
  CHECK(s->select("c.test") == 0);  // configured names replace the certificate's
  CHECK(s->select("unknown.test") == 0);
  CHECK(s->select("") == 0);
  CHECK(s->select(".") == 0);
  CHECK(s->select("*.b.test") == 1);
  REQUIRE(s->names().size() == 3);
  CHECK(s->names()[0] == std::vector<std::string>{"a.test", "www.a.test"});
  CHECK(s->names()[2] == std::vector<std::string>{"c.example", "*.c.example"});
  CHECK(s->handshake_timeout() == std::chrono::seconds(10));
  CHECK(s->alpn_wire() == std::string("\x02h2\x08http/1.1"));
}

TEST_CASE("contexts are TLS 1.2+ without compression or renegotiation", "[net][tls]") {
  temp_dir d;
  auto l = tls_listener(d);
  l.tls->min_version = cfg::tls_options::version::tls1_3;
  auto s = net::make_tls_server(l, nullptr);
  REQUIRE(s);
  for (std::size_t i = 0; i < 3; ++i) {
    SSL_CTX* c = s->native_context(i);
    CHECK(SSL_CTX_get_min_proto_version(c) == TLS1_3_VERSION);
    CHECK((SSL_CTX_get_options(c) & SSL_OP_NO_COMPRESSION) != 0);
    CHECK((SSL_CTX_get_options(c) & SSL_OP_NO_RENEGOTIATION) != 0);
    CHECK((SSL_CTX_get_options(c) & SSL_OP_NO_TICKET) == 0);
  }
  CHECK(s->context().native_handle() == s->native_context(0));
}

TEST_CASE("building re-reads the files and reports what is wrong", "[net][tls]") {
  temp_dir d;
  auto l = tls_listener(d);
  std::string err;
  REQUIRE(net::make_tls_server(l, &err));
  // Replaced on disk: the next build serves the new certificate (what a reload relies on).
  make_certificate(d.file("a.pem"), d.file("a.key"), "new.test", {"new.test"});
  auto s = net::make_tls_server(l, &err);
  REQUIRE(s);
  CHECK(s->names()[0] == std::vector<std::string>{"new.test"});

  make_certificate(d.file("other.pem"), d.file("other.key"), "o.test");
  l.tls->certificates[1].key = d.file("other.key");
  CHECK_FALSE(net::make_tls_server(l, &err));
  CHECK_THAT(err, Catch::StartsWith("listener web: tls: the private key in") &&
                      Catch::Contains("does not match"));
  l.tls->certificates[1].key = d.file("gone.key");
  CHECK_FALSE(net::make_tls_server(l, &err));
  CHECK_THAT(err, Catch::Contains("gone.key") && Catch::Contains("No such file"));
  l.tls.reset();
  CHECK_FALSE(net::make_tls_server(l, &err));
}

TEST_CASE("no ALPN selected on a fresh connection", "[net][tls]") {
  CHECK(net::negotiated_alpn(nullptr).empty());
}
