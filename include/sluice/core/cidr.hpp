// An IPv4/IPv6 network prefix ("10.0.0.0/8", "::1/128") and the test "is this address inside".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace sluice::core {

/// A network prefix. Plain value type; all members are noexcept and allocation-free except
/// to_string().
struct cidr {
  bool v6 = false;
  std::array<std::uint8_t, 16> net{};  ///< network bytes (first 4 for IPv4), host bits zero
  std::uint8_t prefix = 0;             ///< 0..32 (IPv4) or 0..128 (IPv6)

  /// True when `sa` (AF_INET or AF_INET6) lies inside this prefix. An IPv4-mapped IPv6 address
  /// (::ffff:a.b.c.d) matches IPv4 prefixes, so dual-stack listeners behave as IPv4 ones.
  /// Any other family never matches.
  bool contains(const sockaddr* sa) const noexcept;
  /// Same for raw address bytes (4 or 16 of them).
  bool contains(const std::uint8_t* addr, bool addr_v6) const noexcept;

  /// Canonical text, e.g. "10.0.0.0/8".
  std::string to_string() const;
};

/// Parses "a.b.c.d/n", "v6::/n", or a bare address (meaning /32 or /128). Host bits set below
/// the prefix ("10.1.2.3/8") are rejected: they are almost always a typo. nullopt on anything
/// else; `*error`, when given, says why.
std::optional<cidr> parse_cidr(std::string_view text, std::string* error = nullptr);

}  // namespace sluice::core
