// Counters of one tcp listener, shared by all workers (relaxed atomics, read at scrape time).
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice::l4 {

/// Per-backend counters live in core::backend_stats (requests = connections, connect_failures,
/// failures = resets/timeouts, bytes_sent/bytes_received).
struct listener_stats {
  std::atomic<std::uint64_t> connections{0};       ///< accepted
  std::atomic<std::uint64_t> active{0};            ///< open now (what max_connections limits)
  std::atomic<std::uint64_t> bytes_downstream_in{0};   ///< received from clients
  std::atomic<std::uint64_t> bytes_downstream_out{0};  ///< sent to clients
  std::atomic<std::uint64_t> connect_failures{0};  ///< upstream connect attempts that failed
  std::atomic<std::uint64_t> no_backend{0};        ///< closed: no backend could be reached
  std::atomic<std::uint64_t> refused{0};           ///< closed: over max_connections (or queue timed out)
  std::atomic<std::uint64_t> bad_preamble{0};      ///< closed: bad/missing PROXY header or ClientHello
  std::atomic<std::uint64_t> idle_timeouts{0};
  std::atomic<std::uint64_t> lifetime_expired{0};
  std::atomic<std::uint64_t> resets{0};            ///< a reset from one side passed to the other
};

}  // namespace sluice::l4
