// Passive health (outlier ejection) arithmetic: ejection time growth, ejection cap. Pure, no I/O.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "sluice/config/config.hpp"

namespace sluice::health {

/// Length of the n-th ejection in a row (n >= 1; 0 counts as 1): base * n, capped at `max`.
config::duration ejection_time(std::uint32_t n, config::duration base,
                               config::duration max) noexcept;

/// Whether one more backend may be ejected while `ejected` of `total` are out already: the
/// ejected share stays within max_percent, except that one backend can always be ejected
/// (Envoy's rule), so a two-backend cluster at 10% can still lose a dead one.
bool may_eject(std::size_t ejected, std::size_t total, std::uint32_t max_percent) noexcept;

/// One backend's ejection history. The multiplier grows by one per ejection and starts over
/// when the backend stayed in service for at least max_ejection since its last return.
class ejection_record {
 public:
  using clock = std::chrono::steady_clock;

  /// Records an ejection at `now`; returns how long it lasts.
  config::duration eject(clock::time_point now, const config::outlier_detection& cfg) noexcept;
  /// Records the return to service at `now`.
  void returned(clock::time_point now) noexcept {
    returned_ = now;
    has_returned_ = true;
  }
  std::uint32_t multiplier() const noexcept { return multiplier_; }

 private:
  std::uint32_t multiplier_ = 0;
  clock::time_point returned_{};
  bool has_returned_ = false;
};

}  // namespace sluice::health
