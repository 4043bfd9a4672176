#include "sluice/pool/slow_start.hpp"

#include <algorithm>

namespace sluice::pool {

std::uint32_t slow_start_weight(std::uint32_t weight, std::chrono::nanoseconds elapsed,
                                std::chrono::nanoseconds window) noexcept {
  const std::uint64_t full = std::uint64_t{std::max<std::uint32_t>(weight, 1)} * slow_start_scale;
  constexpr std::uint64_t top = 0xffffffffu;
  if (window.count() <= 0 || elapsed >= window) return static_cast<std::uint32_t>(std::min(full, top));
  if (elapsed.count() <= 0) return 1;
  // 128-bit product: full (<= 2^32 * 10) times a nanosecond count does not fit in 64 bits.
  const auto scaled = static_cast<unsigned __int128>(full) * static_cast<std::uint64_t>(elapsed.count()) /
                      static_cast<std::uint64_t>(window.count());
  return static_cast<std::uint32_t>(
      std::clamp<std::uint64_t>(static_cast<std::uint64_t>(scaled), 1, top));
}

}  // namespace sluice::pool
