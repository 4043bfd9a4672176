// Rare-event counters of one TCP listener, shared by all workers and exported at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace sluice::metrics {

/// Why a TCP session ended early; the `reason` label of sluice_tcp_connections_closed_total.
enum class tcp_close_reason : unsigned {
  refused,           ///< over max_connections (or its queue timed out), or every backend full
  no_backend,        ///< no backend could be reached (none ready, every connect failed)
  bad_preamble,      ///< bad or missing PROXY header, or the preamble read failed
  idle_timeout,      ///< no byte either way for idle_timeout
  lifetime_expired,  ///< max_lifetime reached
  reset,             ///< a reset (or failed write) on one side passed on to the other
};
inline constexpr unsigned tcp_close_reasons = 6;
const char* to_string(tcp_close_reason r) noexcept;

/// One per TCP listener, owned jointly by the registry (which exports it) and the listener's
/// state. Relaxed atomics: written by any worker, but only for events that happen at most
/// once per connection (the per-byte and per-connection counters live in the worker shards).
struct tcp_listener_counters {
  /// Connections holding a max_connections slot right now (the limit's own counter; kept
  /// only when the listener has a limit).
  std::atomic<std::uint64_t> active{0};
  /// Upstream connect attempts that failed (each failover attempt counts).
  std::atomic<std::uint64_t> connect_failures{0};
  std::array<std::atomic<std::uint64_t>, tcp_close_reasons> closed{};

  void on_close(tcp_close_reason r) noexcept {
    closed[static_cast<unsigned>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t closed_by(tcp_close_reason r) const noexcept {
    return closed[static_cast<unsigned>(r)].load(std::memory_order_relaxed);
  }
};

}  // namespace sluice::metrics
