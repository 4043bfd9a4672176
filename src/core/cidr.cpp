#include "sluice/core/cidr.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace sluice::core {

namespace {

bool prefix_match(const std::uint8_t* a, const std::uint8_t* net, unsigned bits) noexcept {
  const unsigned full = bits / 8, rest = bits % 8;
  if (std::memcmp(a, net, full) != 0) return false;
  if (rest == 0) return true;
  const std::uint8_t mask = static_cast<std::uint8_t>(0xff00u >> rest);
  return (a[full] & mask) == net[full];
}

constexpr std::uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

bool cidr::contains(const std::uint8_t* addr, bool addr_v6) const noexcept {
  if (addr_v6 && !v6) {
    if (std::memcmp(addr, v4_mapped_prefix, 12) != 0) return false;
    return prefix_match(addr + 12, net.data(), prefix);
  }
  if (addr_v6 != v6) return false;
  return prefix_match(addr, net.data(), prefix);
}

bool cidr::contains(const sockaddr* sa) const noexcept {
  if (!sa) return false;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return contains(reinterpret_cast<const std::uint8_t*>(&in->sin_addr), false);
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    return contains(reinterpret_cast<const std::uint8_t*>(&in6->sin6_addr), true);
  }
  return false;
}

std::string cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, net.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

std::optional<cidr> parse_cidr(std::string_view text, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<cidr> {
    if (error) *error = why;
    return std::nullopt;
  };
  if (text.empty() || text.size() > 64) return fail("expected an address or prefix like 10.0.0.0/8 or ::1/128");
  std::string_view host = text, bits_text;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    host = text.substr(0, slash);
    bits_text = text.substr(slash + 1);
    if (bits_text.empty()) return fail("missing prefix length after '/'");
  }
  cidr out;
  const std::string h(host);
  if (::inet_pton(AF_INET, h.c_str(), out.net.data()) == 1) {
    out.v6 = false;
  } else if (::inet_pton(AF_INET6, h.c_str(), out.net.data()) == 1) {
    out.v6 = true;
  } else {
    return fail("not a numeric IPv4 or IPv6 address");
  }
  const unsigned max_bits = out.v6 ? 128 : 32;
  unsigned bits = max_bits;
  if (!bits_text.empty()) {
    auto [ptr, ec] = std::from_chars(bits_text.data(), bits_text.data() + bits_text.size(), bits);
    if (ec != std::errc{} || ptr != bits_text.data() + bits_text.size() || bits > max_bits)
      return fail(out.v6 ? "prefix length must be 0..128" : "prefix length must be 0..32");
  }
  out.prefix = static_cast<std::uint8_t>(bits);
  // Host bits below the prefix must be zero.
  const unsigned bytes = max_bits / 8;
  for (unsigned i = 0; i < bytes; ++i) {
    unsigned keep = bits >= (i + 1) * 8 ? 8 : (bits > i * 8 ? bits - i * 8 : 0);
    std::uint8_t mask = static_cast<std::uint8_t>(keep == 0 ? 0 : (0xff00u >> keep));
    if (out.net[i] & ~mask) return fail("address has bits set beyond the prefix length (write the network address)");
  }
  return out;
}

}  // namespace sluice::core
