#include "sluice/l4/client_hello.hpp"

#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

using sluice::l4::client_hello;
using sluice::l4::parse_client_hello;

namespace {

// A TLS 1.3 ClientHello as sent by `openssl s_client -connect 127.0.0.1:PORT
// -servername db.example.com` (OpenSSL 3.0), recorded once from the wire.
const std::vector<std::uint8_t> openssl_hello = {
    0x16, 0x03, 0x01, 0x01, 0x3b, 0x01, 0x00, 0x01, 0x37, 0x03, 0x03, 0x62, 0x5f, 0x7f, 0xa2, 0x29,
    0xf3, 0x33, 0x06, 0xc0, 0xaf, 0x37, 0x46, 0x03, 0x71, 0x82, 0xb2, 0xad, 0x64, 0x1a, 0xb2, 0xa5,
    0x7c, 0xbc, 0xf2, 0xad, 0xf5, 0x50, 0x74, 0x98, 0xfb, 0x6c, 0xb3, 0x20, 0x58, 0xcb, 0x70, 0x77,
    0xb8, 0x99, 0x63, 0x4b, 0x06, 0x69, 0x33, 0x09, 0xf1, 0x46, 0xb8, 0x7a, 0x4e, 0x9c, 0xc7, 0x5a,
    0x8c, 0xbd, 0xc1, 0x53, 0x2a, 0x41, 0x16, 0x17, 0xf7, 0x14, 0x28, 0x57, 0x00, 0x3e, 0x13, 0x02,
    0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
    0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xb0,
    0x00, 0x00, 0x00, 0x13, 0x00, 0x11, 0x00, 0x00, 0x0e, 0x64, 0x62, 0x2e, 0x65, 0x78, 0x61, 0x6d,
    0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00,
    0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01,
    0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00,
    0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06,
    0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08,
    0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05,
    0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01,
    0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20,
    0xa2, 0x8d, 0xbb, 0x1d, 0xef, 0xab, 0x4a, 0x66, 0x0b, 0x29, 0xe3, 0xd6, 0xb3, 0x29, 0xcd, 0x73,
    0x51, 0xba, 0x67, 0xfa, 0x2c, 0xf7, 0x62, 0xd3, 0x84, 0x01, 0xb2, 0x89, 0x83, 0x61, 0xf4, 0x56,
};
// Where "db.example.com" starts inside openssl_hello.
constexpr std::size_t name_offset = 153;

client_hello parse(const std::vector<std::uint8_t>& v) { return parse_client_hello({v.data(), v.size()}); }

// Re-frames a single-record hello into records of at most `chunk` handshake bytes each.
std::vector<std::uint8_t> fragment(const std::vector<std::uint8_t>& rec, std::size_t chunk) {
  std::vector<std::uint8_t> out;
  const std::size_t body = rec.size() - 5;
  for (std::size_t off = 0; off < body; off += chunk) {
    const std::size_t n = std::min(chunk, body - off);
    out.insert(out.end(), {0x16, 0x03, 0x01, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)});
    out.insert(out.end(), rec.begin() + 5 + static_cast<long>(off), rec.begin() + 5 + static_cast<long>(off + n));
  }
  return out;
}

}  // namespace

TEST_CASE("client_hello reads the server_name of a real ClientHello", "[sni]") {
  auto r = parse(openssl_hello);
  REQUIRE(r.state == client_hello::status::complete);
  CHECK(r.server_name == "db.example.com");
  CHECK_FALSE(r.bad_name);
}

TEST_CASE("client_hello asks for more on every strict prefix", "[sni]") {
  for (std::size_t n = 0; n < openssl_hello.size(); ++n) {
    INFO(n);
    auto r = parse_client_hello({openssl_hello.data(), n});
    CHECK(r.state == client_hello::status::need_more);
  }
}

TEST_CASE("client_hello ignores bytes after the hello", "[sni]") {
  auto v = openssl_hello;
  v.insert(v.end(), {0x14, 0x03, 0x03, 0x00, 0x01, 0x01});
  auto r = parse(v);
  REQUIRE(r.state == client_hello::status::complete);
  CHECK(r.server_name == "db.example.com");
}

TEST_CASE("client_hello reassembles a hello split over several records", "[sni]") {
  for (std::size_t chunk : {1u, 3u, 50u, 200u}) {
    INFO(chunk);
    auto v = fragment(openssl_hello, chunk);
    auto r = parse(v);
    REQUIRE(r.state == client_hello::status::complete);
    CHECK(r.server_name == "db.example.com");
    CHECK(parse_client_hello({v.data(), v.size() - 1}).state == client_hello::status::need_more);
  }
}

TEST_CASE("client_hello lowercases the name and drops a trailing dot", "[sni]") {
  auto v = openssl_hello;
  v[name_offset] = 'D';
  v[name_offset + 3] = 'E';
  auto r = parse(v);
  REQUIRE(r.state == client_hello::status::complete);
  CHECK(r.server_name == "db.example.com");
  v[name_offset + 13] = '.';  // "db.example.co."
  r = parse(v);
  CHECK(r.server_name == "db.example.co");
}

TEST_CASE("client_hello flags an implausible host name", "[sni]") {
  auto v = openssl_hello;
  v[name_offset + 2] = '/';
  auto r = parse(v);
  REQUIRE(r.state == client_hello::status::complete);
  CHECK(r.server_name.empty());
  CHECK(r.bad_name);
}

TEST_CASE("client_hello rejects what is not a ClientHello", "[sni]") {
  auto check_invalid = [](std::vector<std::uint8_t> v) {
    CHECK(parse_client_hello({v.data(), v.size()}).state == client_hello::status::invalid);
  };
  check_invalid({'G', 'E', 'T', ' ', '/'});                // plain HTTP
  check_invalid({'S'});                                    // first byte alone is enough
  check_invalid({0x16, 0x02});                             // not TLS major version 3
  check_invalid({0x17, 0x03, 0x03, 0x00, 0x10});           // application data record
  check_invalid({0x16, 0x03, 0x01, 0x00, 0x00});           // empty record
  check_invalid({0x16, 0x03, 0x01, 0xff, 0xff});           // record longer than TLS allows
  check_invalid({0x16, 0x03, 0x01, 0x00, 0x10, 0x02});     // ServerHello, detected early
  auto v = openssl_hello;
  v[5] = 0x02;  // handshake type
  check_invalid(v);
}

TEST_CASE("client_hello rejects lengths that overrun", "[sni]") {
  // Handshake length larger than the record, followed by a non-handshake record.
  auto v = openssl_hello;
  v[8] = static_cast<std::uint8_t>(v[8] + 1);
  v.insert(v.end(), {0x17, 0x03, 0x03, 0x00, 0x01, 0x00});
  CHECK(parse(v).state == client_hello::status::invalid);

  // Session id length beyond 32.
  v = openssl_hello;
  v[5 + 4 + 2 + 32] = 33;
  CHECK(parse(v).state == client_hello::status::invalid);

  // Extensions block length one too long: the last extension overruns.
  v = openssl_hello;
  const std::size_t sid = v[5 + 4 + 2 + 32];
  const std::size_t cs_at = 5 + 4 + 2 + 32 + 1 + sid;
  const std::size_t cs = (std::size_t{v[cs_at]} << 8) | v[cs_at + 1];
  const std::size_t comp_at = cs_at + 2 + cs;
  const std::size_t ext_at = comp_at + 1 + v[comp_at];
  std::size_t ext_len = (std::size_t{v[ext_at]} << 8) | v[ext_at + 1];
  ++ext_len;
  v[ext_at] = static_cast<std::uint8_t>(ext_len >> 8);
  v[ext_at + 1] = static_cast<std::uint8_t>(ext_len);
  CHECK(parse(v).state == client_hello::status::invalid);

  // server_name entry length overrunning its list.
  v = openssl_hello;
  v[name_offset - 1] = static_cast<std::uint8_t>(v[name_offset - 1] + 40);
  CHECK(parse(v).state == client_hello::status::invalid);
}

TEST_CASE("client_hello without a server_name is complete with an empty name", "[sni]") {
  // Minimal hello: version, random, empty session id, one cipher suite, null compression,
  // no extensions.
  std::vector<std::uint8_t> body = {0x03, 0x03};
  body.insert(body.end(), 32, 0x42);
  body.insert(body.end(), {0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00});
  std::vector<std::uint8_t> v = {0x16, 0x03, 0x01, 0x00, static_cast<std::uint8_t>(body.size() + 4),
                                 0x01, 0x00, 0x00, static_cast<std::uint8_t>(body.size())};
  v.insert(v.end(), body.begin(), body.end());
  auto r = parse(v);
  REQUIRE(r.state == client_hello::status::complete);
  CHECK(r.server_name.empty());
  CHECK_FALSE(r.bad_name);
}

TEST_CASE("client_hello survives every truncation and every single-byte corruption", "[sni]") {
  // No crash, no read past the input (run under the sanitizers to prove the latter).
  for (std::size_t i = 0; i < openssl_hello.size(); ++i) {
    for (std::uint8_t x : {0x00, 0xff, 0x80}) {
      auto v = openssl_hello;
      v[i] = x;
      (void)parse(v);
      (void)parse_client_hello({v.data(), i});
    }
  }
  SUCCEED();
}
