// PROXY protocol v1 (text) and v2 (binary) headers: encoding for upstreams, parsing from a
// trusted downstream balancer. Sans-I/O: bytes in, bytes out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <sys/socket.h>

namespace sluice::l4 {

/// Largest header encode_proxy_v1 writes ("PROXY TCP6 <39> <39> 65535 65535\r\n" is 104).
inline constexpr std::size_t proxy_v1_max = 108;
/// Largest header encode_proxy_v2 writes (16-byte preamble + two IPv6 addresses and ports).
inline constexpr std::size_t proxy_v2_max = 52;
/// Largest v2 header parse_proxy_header accepts (TLVs included); longer ones are `invalid`.
inline constexpr std::size_t proxy_v2_parse_max = 4096;

/// Writes "PROXY TCP4|TCP6 src dst sport dport\r\n" into `out` (at least proxy_v1_max bytes)
/// and returns its length. IPv4-mapped IPv6 addresses are written as IPv4. When the two
/// addresses are not of one family (or not IP), writes "PROXY UNKNOWN\r\n". Returns 0 when
/// `out` is too small.
std::size_t encode_proxy_v1(const sockaddr* source, const sockaddr* destination,
                            std::span<std::uint8_t> out) noexcept;

/// Writes a v2 PROXY/STREAM header with AF_INET or AF_INET6 addresses (no TLVs), or a PROXY
/// header with family UNSPEC when the addresses cannot be expressed. Returns its length, 0
/// when `out` (at least proxy_v2_max) is too small.
std::size_t encode_proxy_v2(const sockaddr* source, const sockaddr* destination,
                            std::span<std::uint8_t> out) noexcept;

struct proxy_header {
  enum class status { complete, need_more, invalid } state = status::need_more;
  std::size_t length = 0;  ///< bytes the header takes (complete only); the stream follows
  int version = 0;         ///< 1 or 2 once recognised
  /// False for v1 UNKNOWN, v2 LOCAL and v2 families other than TCP over IPv4/IPv6: the
  /// receiver then keeps the connection's real addresses (as the spec requires).
  bool has_addresses = false;
  sockaddr_storage source{};
  sockaddr_storage destination{};
};

/// Parses a header at the start of `data`. `need_more` while `data` is a strict prefix of a
/// possible header; `invalid` as soon as it cannot be one (wrong signature, bad syntax,
/// v1 line longer than 107 bytes, v2 longer than proxy_v2_parse_max, v2 version not 2,
/// address block shorter than its family needs). Never reads past `data`.
proxy_header parse_proxy_header(std::span<const std::uint8_t> data) noexcept;

}  // namespace sluice::l4
