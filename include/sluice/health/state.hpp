// Hysteresis of active health checks: a pure state machine from probe results to healthy/unhealthy.
#pragma once

#include <cstdint>

namespace sluice::health {

/// Consecutive-count hysteresis (Envoy's healthy_threshold / unhealthy_threshold; HAProxy's
/// rise / fall): `rise` passes in a row make an unhealthy backend healthy, `fall` failures in
/// a row make a healthy one unhealthy; a result of the other kind resets the streak, so a
/// flapping backend keeps the state it had. No I/O, no clock: feed it results, read the state.
class hysteresis {
 public:
  enum class start {
    optimistic,  ///< healthy but unconfirmed: the first result decides at once (HAProxy's "up")
    healthy,     ///< confirmed healthy: needs `fall` failures to go down
    unhealthy,   ///< needs `rise` passes to come up (Envoy's default for new hosts)
  };

  /// Thresholds below 1 count as 1.
  hysteresis(std::uint32_t rise, std::uint32_t fall, start s = start::optimistic) noexcept;

  /// Feeds one probe result. Returns true when healthy() changed.
  bool observe(bool passed) noexcept;

  bool healthy() const noexcept { return healthy_; }
  /// False only before the first result of an optimistic start.
  bool confirmed() const noexcept { return confirmed_; }
  /// Current streaks (one of them is always 0).
  std::uint32_t passes() const noexcept { return passes_; }
  std::uint32_t failures() const noexcept { return failures_; }

 private:
  std::uint32_t rise_, fall_;
  std::uint32_t passes_ = 0, failures_ = 0;
  bool healthy_;
  bool confirmed_;
};

}  // namespace sluice::health
