#include "sluice/l4/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using namespace sluice::l4;

namespace {

sockaddr_storage v4(const char* ip, std::uint16_t port) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &in->sin_addr);
  return ss;
}

sockaddr_storage v6(const char* ip, std::uint16_t port) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in6*>(&ss);
  in->sin6_family = AF_INET6;
  in->sin6_port = htons(port);
  ::inet_pton(AF_INET6, ip, &in->sin6_addr);
  return ss;
}

const sockaddr* sa(const sockaddr_storage& ss) { return reinterpret_cast<const sockaddr*>(&ss); }

std::string v1(const sockaddr_storage& s, const sockaddr_storage& d) {
  std::array<std::uint8_t, proxy_v1_max> buf{};
  auto n = encode_proxy_v1(sa(s), sa(d), buf);
  return std::string(reinterpret_cast<const char*>(buf.data()), n);
}

std::vector<std::uint8_t> v2(const sockaddr_storage& s, const sockaddr_storage& d) {
  std::array<std::uint8_t, proxy_v2_max> buf{};
  auto n = encode_proxy_v2(sa(s), sa(d), buf);
  return {buf.begin(), buf.begin() + static_cast<long>(n)};
}

proxy_header parse(std::string_view s) {
  return parse_proxy_header({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}
proxy_header parse(const std::vector<std::uint8_t>& v) { return parse_proxy_header({v.data(), v.size()}); }

std::string text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  std::uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    port = ntohs(in->sin_port);
  } else {
    auto* in = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
    port = ntohs(in->sin6_port);
  }
  return std::string(buf) + "#" + std::to_string(port);
}

const std::vector<std::uint8_t> sig = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

}  // namespace

TEST_CASE("PROXY v1 encoding is byte-exact", "[proxy_protocol]") {
  CHECK(v1(v4("192.168.0.1", 56324), v4("192.168.0.11", 443)) ==
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  CHECK(v1(v6("2001:db8::1", 1), v6("::1", 65535)) == "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
  // IPv4-mapped addresses (dual-stack sockets) are written as IPv4.
  CHECK(v1(v6("::ffff:10.0.0.1", 1000), v4("10.0.0.2", 80)) == "PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n");
  CHECK(v1(v4("10.0.0.1", 1), v6("::1", 2)) == "PROXY UNKNOWN\r\n");
  sockaddr_storage none{};
  CHECK(v1(none, none) == "PROXY UNKNOWN\r\n");
  // The longest possible line fits.
  auto longest = v1(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
                    v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535));
  CHECK(longest.size() == 104);
  std::array<std::uint8_t, 10> small{};
  CHECK(encode_proxy_v1(sa(v4("1.2.3.4", 1)), sa(v4("1.2.3.4", 2)), small) == 0);
}

TEST_CASE("PROXY v2 encoding is byte-exact", "[proxy_protocol]") {
  std::vector<std::uint8_t> want = sig;
  want.insert(want.end(), {0x21, 0x11, 0x00, 0x0C, 192, 168, 0, 1, 192, 168, 0, 11,
                           0xDC, 0x04, 0x01, 0xBB});
  CHECK(v2(v4("192.168.0.1", 56324), v4("192.168.0.11", 443)) == want);

  want = sig;
  want.insert(want.end(), {0x21, 0x21, 0x00, 0x24});
  std::uint8_t a[16], b[16];
  ::inet_pton(AF_INET6, "2001:db8::1", a);
  ::inet_pton(AF_INET6, "::1", b);
  want.insert(want.end(), a, a + 16);
  want.insert(want.end(), b, b + 16);
  want.insert(want.end(), {0x00, 0x01, 0xFF, 0xFF});
  CHECK(v2(v6("2001:db8::1", 1), v6("::1", 65535)) == want);

  want = sig;
  want.insert(want.end(), {0x21, 0x00, 0x00, 0x00});
  CHECK(v2(v4("10.0.0.1", 1), v6("::1", 2)) == want);
}

TEST_CASE("PROXY headers round-trip", "[proxy_protocol]") {
  const auto s4 = v4("203.0.113.7", 40000), d4 = v4("198.51.100.1", 5432);
  const auto s6 = v6("2001:db8::7", 40001), d6 = v6("2001:db8::1", 443);
  for (const auto& [s, d] : {std::pair{s4, d4}, std::pair{s6, d6}}) {
    auto t = v1(s, d);
    auto h = parse(t + "rest of stream");
    REQUIRE(h.state == proxy_header::status::complete);
    CHECK(h.version == 1);
    CHECK(h.length == t.size());
    CHECK(h.has_addresses);
    CHECK(text(h.source) == text(s));
    CHECK(text(h.destination) == text(d));

    auto b = v2(s, d);
    const std::size_t n = b.size();
    b.push_back('x');
    h = parse(b);
    REQUIRE(h.state == proxy_header::status::complete);
    CHECK(h.version == 2);
    CHECK(h.length == n);
    CHECK(text(h.source) == text(s));
    CHECK(text(h.destination) == text(d));
  }
}

TEST_CASE("PROXY parsing asks for more on every strict prefix", "[proxy_protocol]") {
  const auto t = v1(v4("1.2.3.4", 5), v4("6.7.8.9", 10));
  for (std::size_t i = 0; i < t.size(); ++i) {
    INFO(i);
    CHECK(parse(t.substr(0, i)).state == proxy_header::status::need_more);
  }
  const auto b = v2(v6("2001:db8::7", 1), v6("2001:db8::1", 2));
  for (std::size_t i = 0; i < b.size(); ++i) {
    INFO(i);
    CHECK(parse_proxy_header({b.data(), i}).state == proxy_header::status::need_more);
  }
}

TEST_CASE("PROXY v1 UNKNOWN and v2 LOCAL keep the real addresses", "[proxy_protocol]") {
  auto h = parse("PROXY UNKNOWN\r\n");
  REQUIRE(h.state == proxy_header::status::complete);
  CHECK_FALSE(h.has_addresses);
  CHECK(h.length == 15);
  h = parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
  CHECK(h.state == proxy_header::status::complete);
  CHECK_FALSE(h.has_addresses);

  auto b = sig;
  b.insert(b.end(), {0x20, 0x00, 0x00, 0x00});  // LOCAL
  h = parse(b);
  REQUIRE(h.state == proxy_header::status::complete);
  CHECK_FALSE(h.has_addresses);
  CHECK(h.length == 16);

  // PROXY over UDP: addresses present but not TCP: skipped with its TLVs.
  b = sig;
  b.insert(b.end(), {0x21, 0x12, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0xEE, 0x00, 0x01, 0x00});
  h = parse(b);
  REQUIRE(h.state == proxy_header::status::complete);
  CHECK_FALSE(h.has_addresses);
  CHECK(h.length == 32);

  // v2 with TLVs after the addresses: the whole length is consumed.
  b = sig;
  b.insert(b.end(), {0x21, 0x11, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x04, 0x00, 0x01, 0x7F});
  h = parse(b);
  REQUIRE(h.state == proxy_header::status::complete);
  CHECK(h.has_addresses);
  CHECK(h.length == 32);
  CHECK(text(h.source) == "1.2.3.4#1");
}

TEST_CASE("PROXY parsing rejects malformed headers", "[proxy_protocol]") {
  for (const char* bad : {
           "GET / HTTP/1.1\r\n",
           "PROXY\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
           "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
           "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
           "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
           "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
           "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
           "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
           "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
       }) {
    INFO(bad);
    CHECK(parse(std::string_view(bad)).state ==
          proxy_header::status::invalid);
  }
  CHECK(parse(std::string_view("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 34)).state ==
        proxy_header::status::invalid);
  // No CRLF within 107 bytes.
  CHECK(parse("PROXY " + std::string(101, 'A')).state == proxy_header::status::invalid);
  CHECK(parse("PROXY " + std::string(100, 'A')).state == proxy_header::status::need_more);

  auto with = [](std::vector<std::uint8_t> tail) {
    auto b = sig;
    b.insert(b.end(), tail.begin(), tail.end());
    return b;
  };
  CHECK(parse(with({0x11, 0x11, 0x00, 0x0C})).state == proxy_header::status::invalid);  // version 1
  CHECK(parse(with({0x22, 0x11, 0x00, 0x0C})).state == proxy_header::status::invalid);  // command 2
  CHECK(parse(with({0x21, 0x11, 0x00, 0x0B})).state == proxy_header::status::invalid);  // too short for TCP4
  CHECK(parse(with({0x21, 0x21, 0x00, 0x0C})).state == proxy_header::status::invalid);  // too short for TCP6
  CHECK(parse(with({0x21, 0x41, 0x00, 0x00})).state == proxy_header::status::invalid);  // family 4
  CHECK(parse(with({0x21, 0x13, 0x00, 0x0C})).state == proxy_header::status::invalid);  // transport 3
  CHECK(parse(with({0x21, 0x11, 0xFF, 0xFF})).state == proxy_header::status::invalid);  // too long
  auto b = sig;
  b[5] = 0x0E;
  CHECK(parse(b).state == proxy_header::status::invalid);  // signature differs
}
