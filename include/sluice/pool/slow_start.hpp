// Slow start: the weight of a backend that joins or recovers, ramped linearly as a pure function of time.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::pool {

/// While any backend of a cluster ramps, every effective weight is expressed in units of
/// 1/slow_start_scale of a configured weight unit, so a weight-1 backend still ramps in steps.
inline constexpr std::uint32_t slow_start_scale = 10;

/// Effective weight, in units of 1/slow_start_scale, of a backend with configured `weight`
/// (0 counts as 1) that is `elapsed` into a slow-start `window`:
///   weight * scale                                 when window <= 0 or elapsed >= window,
///   max(1, weight * scale * elapsed / window)      otherwise (elapsed < 0 counts as 0).
/// Linear, never 0, and never above the full weight.
std::uint32_t slow_start_weight(std::uint32_t weight, std::chrono::nanoseconds elapsed,
                                std::chrono::nanoseconds window) noexcept;

}  // namespace sluice::pool
