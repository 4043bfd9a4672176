#include "sluice/core/cidr.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>

using sluice::core::parse_cidr;

namespace {

sockaddr_storage v4(const char* ip) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  ::inet_pton(AF_INET, ip, &in->sin_addr);
  return ss;
}

sockaddr_storage v6(const char* ip) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in6*>(&ss);
  in->sin6_family = AF_INET6;
  ::inet_pton(AF_INET6, ip, &in->sin6_addr);
  return ss;
}

bool in(const char* net, const sockaddr_storage& ss) {
  auto c = parse_cidr(net);
  REQUIRE(c);
  return c->contains(reinterpret_cast<const sockaddr*>(&ss));
}

}  // namespace

TEST_CASE("cidr parses IPv4 and IPv6 prefixes and bare addresses", "[cidr]") {
  CHECK(parse_cidr("10.0.0.0/8")->to_string() == "10.0.0.0/8");
  CHECK(parse_cidr("127.0.0.1")->to_string() == "127.0.0.1/32");
  CHECK(parse_cidr("::1")->to_string() == "::1/128");
  CHECK(parse_cidr("fd00::/8")->to_string() == "fd00::/8");
  CHECK(parse_cidr("0.0.0.0/0")->prefix == 0);
  CHECK(parse_cidr("::/0")->v6);
}

TEST_CASE("cidr rejects malformed text with a reason", "[cidr]") {
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0/8",
                          "host.example/8", "10.0.0.0/8x", "10.1.2.3/8", "fd00::1/8", "1.2.3.4/ 8",
                          " 1.2.3.4"}) {
    std::string why;
    INFO(bad);
    CHECK_FALSE(parse_cidr(bad, &why));
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("cidr matching", "[cidr]") {
  CHECK(in("127.0.0.0/8", v4("127.1.2.3")));
  CHECK_FALSE(in("127.0.0.0/8", v4("128.0.0.1")));
  CHECK(in("10.1.2.0/23", v4("10.1.3.255")));
  CHECK_FALSE(in("10.1.2.0/23", v4("10.1.4.0")));
  CHECK(in("0.0.0.0/0", v4("8.8.8.8")));
  CHECK(in("192.168.1.7", v4("192.168.1.7")));
  CHECK_FALSE(in("192.168.1.7", v4("192.168.1.8")));
  CHECK(in("::1/128", v6("::1")));
  CHECK_FALSE(in("::1/128", v6("::2")));
  CHECK(in("fd00::/8", v6("fdab::1")));
  CHECK_FALSE(in("fd00::/8", v6("fe80::1")));
  // IPv4-mapped IPv6 matches IPv4 prefixes, not the other way round.
  CHECK(in("127.0.0.0/8", v6("::ffff:127.0.0.1")));
  CHECK_FALSE(in("127.0.0.0/8", v6("::1")));
  CHECK_FALSE(in("::1/128", v4("127.0.0.1")));
  sockaddr_storage unix_ss{};
  unix_ss.ss_family = AF_UNIX;
  CHECK_FALSE(in("0.0.0.0/0", unix_ss));
}
