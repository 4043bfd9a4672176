// One upstream backend: its identity, weight and the atomic counters every worker shares.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "sluice/core/address.hpp"

namespace sluice::core {

/// Counters shared by all workers; relaxed atomics, read at scrape time.
struct backend_stats {
  std::atomic<std::uint64_t> requests{0};          ///< requests (or TCP connections) sent
  std::atomic<std::uint64_t> responses_5xx{0};
  std::atomic<std::uint64_t> connect_failures{0};
  std::atomic<std::uint64_t> failures{0};          ///< resets, timeouts, bad responses
};

/// A backend is created by its cluster and lives as long as any snapshot or lease refers to it
/// (shared_ptr). Identity is the configured address text; weight is immutable, a weight change
/// makes a new backend object. Thread-safety: all mutable state is atomic.
class backend {
 public:
  backend(address addr, std::uint32_t weight) : addr_(std::move(addr)), weight_(weight) {}

  const address& addr() const noexcept { return addr_; }
  const std::string& name() const noexcept { return addr_.text; }
  std::uint32_t weight() const noexcept { return weight_; }

  /// In-flight requests (HTTP) or open connections (TCP), maintained by `pool::lease`.
  std::uint32_t active() const noexcept { return active_.load(std::memory_order_relaxed); }
  void add_active(int delta) noexcept {
    active_.fetch_add(static_cast<std::uint32_t>(delta), std::memory_order_relaxed);
  }

  backend_stats& stats() noexcept { return stats_; }
  const backend_stats& stats() const noexcept { return stats_; }

 private:
  address addr_;
  std::uint32_t weight_;
  std::atomic<std::uint32_t> active_{0};
  backend_stats stats_;
};

using backend_ptr = std::shared_ptr<backend>;

}  // namespace sluice::core
