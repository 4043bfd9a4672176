#include "sluice/config/certificate.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "test_certs.hpp"

namespace cfg = sluice::config;
using sluice::test::make_certificate;
using sluice::test::temp_dir;
using sluice::test::write_text;

TEST_CASE("a matching certificate and key pass, with their names", "[config][tls]") {
  temp_dir d;
  make_certificate(d.file("a.pem"), d.file("a.key"), "a.test", {"a.test", "*.A.test"});
  auto r = cfg::check_certificate(d.file("a.pem"), d.file("a.key"));
  CHECK(r.what == cfg::certificate_check::problem::none);
  CHECK(r.names == std::vector<std::string>{"a.test", "*.a.test"});
}

TEST_CASE("without subjectAltName the CN names the certificate", "[config][tls]") {
  temp_dir d;
  make_certificate(d.file("c.pem"), d.file("c.key"), "Only.CN.test");
  auto r = cfg::check_certificate(d.file("c.pem"), d.file("c.key"));
  REQUIRE(r.what == cfg::certificate_check::problem::none);
  CHECK(r.names == std::vector<std::string>{"only.cn.test"});
}

TEST_CASE("a chain after the certificate is accepted", "[config][tls]") {
  temp_dir d;
  make_certificate(d.file("a.pem"), d.file("a.key"), "a.test");
  make_certificate(d.file("ca.pem"), d.file("ca.key"), "ca");
  std::string chain;
  for (auto f : {"a.pem", "ca.pem"}) {
    std::FILE* in = std::fopen(d.file(f).c_str(), "rb");
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) chain.append(buf, n);
    std::fclose(in);
  }
  write_text(d.file("chain.pem"), chain);
  CHECK(cfg::check_certificate(d.file("chain.pem"), d.file("a.key")).what ==
        cfg::certificate_check::problem::none);
  write_text(d.file("bad-chain.pem"), chain + "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
  auto r = cfg::check_certificate(d.file("bad-chain.pem"), d.file("a.key"));
  CHECK(r.what == cfg::certificate_check::problem::cert);
  CHECK_THAT(r.message, Catch::Contains("chain"));
}

TEST_CASE("missing files, bad PEM and a foreign key are reported against the right file",
          "[config][tls]") {
  temp_dir d;
  make_certificate(d.file("a.pem"), d.file("a.key"), "a.test");
  make_certificate(d.file("b.pem"), d.file("b.key"), "b.test");
  write_text(d.file("junk.pem"), "not a certificate\n");

  auto missing = cfg::check_certificate(d.file("none.pem"), d.file("a.key"));
  CHECK(missing.what == cfg::certificate_check::problem::cert);
  CHECK_THAT(missing.message, Catch::Contains("cannot read") && Catch::Contains("none.pem") &&
                                  Catch::Contains("No such file"));

  auto junk = cfg::check_certificate(d.file("junk.pem"), d.file("a.key"));
  CHECK(junk.what == cfg::certificate_check::problem::cert);
  CHECK_THAT(junk.message, Catch::Contains("holds no PEM certificate"));

  auto key_junk = cfg::check_certificate(d.file("a.pem"), d.file("junk.pem"));
  CHECK(key_junk.what == cfg::certificate_check::problem::key);
  CHECK_THAT(key_junk.message, Catch::Contains("no unencrypted PEM private key"));

  auto key_missing = cfg::check_certificate(d.file("a.pem"), d.file("none.key"));
  CHECK(key_missing.what == cfg::certificate_check::problem::key);

  auto mismatch = cfg::check_certificate(d.file("a.pem"), d.file("b.key"));
  CHECK(mismatch.what == cfg::certificate_check::problem::key);
  CHECK_THAT(mismatch.message, Catch::Contains("does not match"));
  CHECK(mismatch.names.empty());
}

TEST_CASE("cipher lists are checked by OpenSSL", "[config][tls]") {
  CHECK(cfg::check_cipher_list("ECDHE+AESGCM").empty());
  CHECK_FALSE(cfg::check_cipher_list("NO-SUCH-CIPHER").empty());
}

TEST_CASE("dns_names of a null certificate is empty", "[config][tls]") {
  CHECK(cfg::dns_names(nullptr).empty());
}

TEST_CASE("only small regular files are read", "[config][tls]") {
  temp_dir d;
  std::string out, why;
  CHECK_FALSE(cfg::read_pem_file(d.path().string(), out, &why));
  CHECK_THAT(why, Catch::Contains("is a directory"));
  CHECK_FALSE(cfg::read_pem_file("/dev/zero", out, &why));
  CHECK_THAT(why, Catch::Contains("not a regular file"));
  REQUIRE(::mkfifo(d.file("fifo").c_str(), 0600) == 0);
  CHECK_FALSE(cfg::read_pem_file(d.file("fifo"), out, &why));  // no writer: must not block
  CHECK_THAT(why, Catch::Contains("not a regular file"));
  write_text(d.file("big.pem"), std::string((1 << 20) + 1, 'x'));
  CHECK_FALSE(cfg::read_pem_file(d.file("big.pem"), out, &why));
  CHECK_THAT(why, Catch::Contains("larger than 1 MiB"));
  auto r = cfg::check_certificate("/dev/zero", "/dev/zero");
  CHECK(r.what == cfg::certificate_check::problem::cert);
  write_text(d.file("small.pem"), "abc");
  CHECK(cfg::read_pem_file(d.file("small.pem"), out, &why));
  CHECK(out == "abc");
}
