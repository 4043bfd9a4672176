#pragma once
// A cheap reading of the monotonic clock, for deadlines and idle stamps.

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string_view>

namespace sluice::core {

/// CLOCK_MONOTONIC as of the kernel's last timer tick: the epoch of std::chrono::steady_clock,
/// at most one tick (1 to 10 ms) behind it, and read from the vDSO without touching the TSC.
/// A deadline computed from it fires at most one tick early; request and upstream latencies,
/// which need the precise clock, keep steady_clock::now().
inline std::chrono::steady_clock::time_point coarse_now() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

/// A steady_clock time in milliseconds, truncated to 32 bits (wraps after 49 days): for short
/// intervals, as `ms32(later) - ms32(earlier)`.
inline std::uint32_t ms32(std::chrono::steady_clock::time_point t) noexcept {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

/// The current time as an HTTP date (RFC 9110 §5.6.7, "Sun, 06 Nov 1994 08:49:37 GMT"), for
/// Date fields: formatted at most once a second per thread, from the coarse wall clock. The
/// view stays valid on this thread until the next call.
std::string_view http_date() noexcept;

/// ms32(coarse_now()).
inline std::uint32_t coarse_ms() noexcept { return ms32(coarse_now()); }

}  // namespace sluice::core
