#include "sluice/h2/grpc.hpp"

#include <charconv>
#include <cstdint>

namespace sluice::h2::grpc {

bool is_grpc(std::string_view content_type) noexcept {
  constexpr std::string_view base = "application/grpc";
  if (content_type.substr(0, base.size()) != base) return false;
  return content_type.size() == base.size() || content_type[base.size()] == '+' ||
         content_type[base.size()] == ';';
}

std::optional<std::chrono::milliseconds> parse_timeout(std::string_view v) noexcept {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  auto digits = v.substr(0, v.size() - 1);
  std::uint64_t n = 0;
  auto r = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (r.ec != std::errc{} || r.ptr != digits.data() + digits.size()) return std::nullopt;
  std::uint64_t ns_per = 0;
  switch (v.back()) {
    case 'H': ns_per = 3600ull * 1000000000ull; break;
    case 'M': ns_per = 60ull * 1000000000ull; break;
    case 'S': ns_per = 1000000000ull; break;
    case 'm': ns_per = 1000000ull; break;
    case 'u': ns_per = 1000ull; break;
    case 'n': ns_per = 1ull; break;
    default: return std::nullopt;
  }
  constexpr long double cap_ms = 100.0L * 24 * 3600 * 1000;  // 8 digits of hours overflow ns
  long double ms = static_cast<long double>(n) * ns_per / 1e6L;
  if (ms > cap_ms) ms = cap_ms;
  auto whole = static_cast<std::int64_t>(ms);
  if (static_cast<long double>(whole) < ms) ++whole;
  return std::chrono::milliseconds(whole);
}

}  // namespace sluice::h2::grpc
