#include "sluice/health/outlier.hpp"

#include <algorithm>

namespace sluice::health {

config::duration ejection_time(std::uint32_t n, config::duration base,
                               config::duration max) noexcept {
  n = std::max<std::uint32_t>(n, 1);
  if (base.count() <= 0) return config::duration{0};
  // base * n without overflow: past max / base the cap applies anyway.
  if (static_cast<std::uint64_t>(n) > static_cast<std::uint64_t>(max.count() / base.count()))
    return std::max(max, base);
  return std::max(std::min(base * n, max), base);
}

bool may_eject(std::size_t ejected, std::size_t total, std::uint32_t max_percent) noexcept {
  if (ejected >= total) return false;
  if (ejected == 0) return true;
  return (ejected + 1) * 100 <= static_cast<std::uint64_t>(total) * std::min<std::uint32_t>(max_percent, 100);
}

config::duration ejection_record::eject(clock::time_point now,
                                        const config::outlier_detection& cfg) noexcept {
  if (has_returned_ && now - returned_ >= cfg.max_ejection) multiplier_ = 0;
  if (multiplier_ < 1'000'000) ++multiplier_;
  return ejection_time(multiplier_, cfg.base_ejection, cfg.max_ejection);
}

}  // namespace sluice::health
