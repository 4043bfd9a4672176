#include "sluice/health/state.hpp"

#include <algorithm>

namespace sluice::health {

hysteresis::hysteresis(std::uint32_t rise, std::uint32_t fall, start s) noexcept
    : rise_(std::max<std::uint32_t>(rise, 1)),
      fall_(std::max<std::uint32_t>(fall, 1)),
      healthy_(s != start::unhealthy),
      confirmed_(s != start::optimistic) {}

bool hysteresis::observe(bool passed) noexcept {
  if (passed) {
    failures_ = 0;
    if (passes_ < rise_) ++passes_;  // saturate: a long healthy run never overflows
  } else {
    passes_ = 0;
    if (failures_ < fall_) ++failures_;
  }
  if (!confirmed_) {
    confirmed_ = true;
    if (!passed) {
      healthy_ = false;
      return true;
    }
    return false;
  }
  if (healthy_ && failures_ >= fall_) {
    healthy_ = false;
    return true;
  }
  if (!healthy_ && passes_ >= rise_) {
    healthy_ = true;
    return true;
  }
  return false;
}

}  // namespace sluice::health
