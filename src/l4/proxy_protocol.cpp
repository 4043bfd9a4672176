#include "sluice/l4/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace sluice::l4 {

namespace {

constexpr std::uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                           0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::size_t v1_line_max = 107;  // spec: 107 bytes including CRLF

// An IP endpoint reduced to what the headers carry: IPv4-mapped IPv6 becomes IPv4.
struct ip_endpoint {
  int family = 0;  // AF_INET, AF_INET6 or 0
  std::uint8_t addr[16] = {};
  std::uint16_t port = 0;  // host order
};

ip_endpoint reduce(const sockaddr* sa) noexcept {
  ip_endpoint e;
  if (!sa) return e;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    e.family = AF_INET;
    std::memcpy(e.addr, &in->sin_addr, 4);
    e.port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    e.port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      e.family = AF_INET;
      std::memcpy(e.addr, reinterpret_cast<const std::uint8_t*>(&in6->sin6_addr) + 12, 4);
    } else {
      e.family = AF_INET6;
      std::memcpy(e.addr, &in6->sin6_addr, 16);
    }
  }
  return e;
}

void put16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

std::uint16_t get16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

void store(sockaddr_storage& ss, int family, const std::uint8_t* addr, std::uint16_t port) noexcept {
  ss = {};
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, addr, 4);
    in->sin_port = htons(port);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, addr, 16);
    in6->sin6_port = htons(port);
  }
}

// Decimal port, 0..65535, no sign, no leading zero (except "0" itself).
bool parse_port(std::string_view s, std::uint16_t& out) noexcept {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) return false;
  out = static_cast<std::uint16_t>(v);
  return true;
}

bool parse_ip(std::string_view s, int family, std::uint8_t* out) noexcept {
  char buf[64];
  if (s.empty() || s.size() >= sizeof buf) return false;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  return ::inet_pton(family, buf, out) == 1;
}

proxy_header parse_v1(std::span<const std::uint8_t> data) noexcept {
  proxy_header h;
  h.version = 1;
  const std::size_t scan = std::min(data.size(), v1_line_max);
  std::size_t eol = 0;
  bool found = false;
  for (std::size_t i = 0; i < scan; ++i) {
    if (data[i] == '\r') {
      if (i + 1 == data.size()) break;  // CR is the last byte so far: wait for the LF
      if (i + 1 == scan || data[i + 1] != '\n') return {proxy_header::status::invalid};
      eol = i;
      found = true;
      break;
    }
    if (data[i] == '\n' || data[i] == 0) return {proxy_header::status::invalid};
  }
  if (!found) {
    // Bare '\r' at the very end is still a possible CRLF.
    if (data.size() >= v1_line_max) return {proxy_header::status::invalid};
    return h;  // need_more
  }
  std::string_view line(reinterpret_cast<const char*>(data.data()), eol);
  line.remove_prefix(v1_prefix.size());
  // Split on single spaces.
  std::string_view parts[6];
  std::size_t n = 0;
  while (!line.empty()) {
    if (n == 6) return {proxy_header::status::invalid};
    auto sp = line.find(' ');
    parts[n++] = line.substr(0, sp);
    if (parts[n - 1].empty()) return {proxy_header::status::invalid};
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
    if (line.empty()) return {proxy_header::status::invalid};  // trailing space
  }
  h.length = eol + 2;
  if (n >= 1 && parts[0] == "UNKNOWN") {
    // The rest of the line is to be ignored.
    h.state = proxy_header::status::complete;
    return h;
  }
  if (n != 5) return {proxy_header::status::invalid};
  int family = 0;
  if (parts[0] == "TCP4")
    family = AF_INET;
  else if (parts[0] == "TCP6")
    family = AF_INET6;
  else
    return {proxy_header::status::invalid};
  std::uint8_t src[16], dst[16];
  std::uint16_t sport = 0, dport = 0;
  if (!parse_ip(parts[1], family, src) || !parse_ip(parts[2], family, dst) ||
      !parse_port(parts[3], sport) || !parse_port(parts[4], dport))
    return {proxy_header::status::invalid};
  store(h.source, family, src, sport);
  store(h.destination, family, dst, dport);
  h.has_addresses = true;
  h.state = proxy_header::status::complete;
  return h;
}

proxy_header parse_v2(std::span<const std::uint8_t> data) noexcept {
  proxy_header h;
  h.version = 2;
  if (data.size() < 16) return h;
  const std::uint8_t ver_cmd = data[12], fam = data[13];
  const std::size_t len = get16(&data[14]);
  if ((ver_cmd >> 4) != 2) return {proxy_header::status::invalid};
  const std::uint8_t cmd = ver_cmd & 0x0F;
  if (cmd > 1) return {proxy_header::status::invalid};
  if (16 + len > proxy_v2_parse_max) return {proxy_header::status::invalid};
  const std::uint8_t family = fam >> 4, transport = fam & 0x0F;
  if (family > 3 || transport > 2) return {proxy_header::status::invalid};
  // Check the address block is big enough before waiting for it: an impossible length is
  // invalid now, not after more bytes.
  std::size_t need = 0;
  if (family == 1) need = 12;
  if (family == 2) need = 36;
  if (family == 3) need = 216;
  if (cmd == 1 && len < need) return {proxy_header::status::invalid};
  if (data.size() < 16 + len) return h;  // need_more
  h.length = 16 + len;
  h.state = proxy_header::status::complete;
  if (cmd == 0 || transport != 1 || (family != 1 && family != 2)) return h;  // LOCAL, UDP, unix, UNSPEC
  const std::uint8_t* p = data.data() + 16;
  if (family == 1) {
    store(h.source, AF_INET, p, get16(p + 8));
    store(h.destination, AF_INET, p + 4, get16(p + 10));
  } else {
    store(h.source, AF_INET6, p, get16(p + 32));
    store(h.destination, AF_INET6, p + 16, get16(p + 34));
  }
  h.has_addresses = true;
  return h;
}

}  // namespace

std::size_t encode_proxy_v1(const sockaddr* source, const sockaddr* destination,
                            std::span<std::uint8_t> out) noexcept {
  if (out.size() < proxy_v1_max) return 0;
  const ip_endpoint s = reduce(source), d = reduce(destination);
  char* p = reinterpret_cast<char*>(out.data());
  if (s.family == 0 || s.family != d.family) {
    static constexpr std::string_view unknown = "PROXY UNKNOWN\r\n";
    std::memcpy(p, unknown.data(), unknown.size());
    return unknown.size();
  }
  char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
  ::inet_ntop(s.family, s.addr, sa, sizeof sa);
  ::inet_ntop(d.family, d.addr, da, sizeof da);
  const int n = std::snprintf(p, out.size(), "PROXY %s %s %s %u %u\r\n",
                              s.family == AF_INET ? "TCP4" : "TCP6", sa, da,
                              static_cast<unsigned>(s.port), static_cast<unsigned>(d.port));
  return n > 0 && static_cast<std::size_t>(n) < out.size() ? static_cast<std::size_t>(n) : 0;
}

std::size_t encode_proxy_v2(const sockaddr* source, const sockaddr* destination,
                            std::span<std::uint8_t> out) noexcept {
  if (out.size() < proxy_v2_max) return 0;
  const ip_endpoint s = reduce(source), d = reduce(destination);
  std::uint8_t* p = out.data();
  std::memcpy(p, v2_signature, sizeof v2_signature);
  p[12] = 0x21;  // version 2, PROXY
  if (s.family == 0 || s.family != d.family) {
    p[13] = 0x00;  // UNSPEC: the receiver uses the real connection addresses
    put16(p + 14, 0);
    return 16;
  }
  if (s.family == AF_INET) {
    p[13] = 0x11;  // TCP over IPv4
    put16(p + 14, 12);
    std::memcpy(p + 16, s.addr, 4);
    std::memcpy(p + 20, d.addr, 4);
    put16(p + 24, s.port);
    put16(p + 26, d.port);
    return 28;
  }
  p[13] = 0x21;  // TCP over IPv6
  put16(p + 14, 36);
  std::memcpy(p + 16, s.addr, 16);
  std::memcpy(p + 32, d.addr, 16);
  put16(p + 48, s.port);
  put16(p + 50, d.port);
  return 52;
}

proxy_header parse_proxy_header(std::span<const std::uint8_t> data) noexcept {
  const std::size_t v2n = std::min(data.size(), sizeof v2_signature);
  if (data.empty()) return {};
  if (std::memcmp(data.data(), v2_signature, v2n) == 0) {
    if (data.size() < sizeof v2_signature) return {proxy_header::status::need_more, 0, 2};
    return parse_v2(data);
  }
  const std::size_t v1n = std::min(data.size(), v1_prefix.size());
  if (std::memcmp(data.data(), v1_prefix.data(), v1n) == 0) {
    if (data.size() < v1_prefix.size()) return {proxy_header::status::need_more, 0, 1};
    return parse_v1(data);
  }
  return {proxy_header::status::invalid};
}

}  // namespace sluice::l4
