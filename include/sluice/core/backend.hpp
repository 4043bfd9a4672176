// One upstream backend: its identity, weight, health state and the atomic counters every worker shares.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "sluice/core/address.hpp"
#include "sluice/core/histogram.hpp"

namespace sluice::core {

class backend;

/// How one request (or TCP connection) went on a backend, as reported through `pool::lease`.
enum class outcome : std::uint8_t { success, connect_failure, reset, timeout, http_5xx };

/// Bit of `o` in an outcome mask (passive health: which failures count).
constexpr std::uint8_t outcome_bit(outcome o) noexcept {
  return static_cast<std::uint8_t>(1u << static_cast<unsigned>(o));
}

/// Result of the last active health check of a backend.
enum class check_code : std::uint8_t {
  none,            ///< never checked (or no active check configured)
  ok,
  connect_failed,  ///< refused, unreachable, reset during connect
  timeout,         ///< no complete answer within the check timeout
  bad_status,      ///< HTTP status not in expect_status
  bad_body,        ///< expect_body not found in the response body
  protocol_error,  ///< unparsable answer, connection closed early, body too large
  grpc_status,     ///< grpc health check: grpc-status other than 0 (OK)
  not_serving,     ///< grpc health check: status other than SERVING
};
const char* to_string(check_code c) noexcept;

/// What admin and metrics show for a backend; the first that applies, in this order.
enum class health_state : std::uint8_t { draining, ejected, unhealthy, healthy };
const char* to_string(health_state s) noexcept;

/// Health of one backend, shared by the control plane (writes verdicts) and the workers
/// (read them; feed the passive failure streak). Relaxed atomics: each field is a value on its
/// own; the ready set of the published snapshot is what the data plane obeys.
struct backend_health {
  std::atomic<bool> checked_healthy{true};  ///< active checks' verdict (true without checks)
  std::atomic<bool> ejected{false};         ///< passive health (outlier ejection)
  std::atomic<bool> draining{false};        ///< admin: no new requests, in-flight ones finish
  std::atomic<bool> in_service{false};      ///< in the last published ready set (panic aside)
  std::atomic<std::uint32_t> consecutive_failures{0};  ///< passive streak, reset by a success
  std::atomic<std::uint32_t> ejections{0};             ///< times ejected, ever
  std::atomic<std::int64_t> ejected_until_ms{0};       ///< system clock, ms since epoch
  std::atomic<check_code> last_check{check_code::none};
  std::atomic<std::uint16_t> last_check_status{0};     ///< HTTP status of the last http check, or 0
  std::atomic<std::int64_t> last_check_ms{0};          ///< system clock, ms since epoch; 0 = never
  std::atomic<std::uint64_t> checks_passed{0};
  std::atomic<std::uint64_t> checks_failed{0};
  std::atomic<std::uint32_t> health_flips{0};          ///< active verdict changes
  std::atomic<std::int64_t> ramp_since_ns{0};          ///< steady clock: slow start began; 0 = none
};

/// Receives the failures `pool::lease::report` sees on a backend (passive health). The owning
/// cluster attaches one to each backend it creates. Called on worker threads: must be cheap.
class backend_observer {
 public:
  virtual ~backend_observer() = default;
  virtual void on_failure(backend& b, outcome o) noexcept = 0;
};

/// Counters shared by all workers; relaxed atomics, read at scrape time.
struct backend_stats {
  std::atomic<std::uint64_t> requests{0};          ///< requests (or TCP connections) sent
  std::atomic<std::uint64_t> responses_5xx{0};
  std::atomic<std::uint64_t> connect_failures{0};
  std::atomic<std::uint64_t> failures{0};          ///< resets, timeouts, bad responses
  std::atomic<std::uint64_t> bytes_sent{0};        ///< to the backend (TCP relay)
  std::atomic<std::uint64_t> bytes_received{0};    ///< from the backend (TCP relay)
};

/// Highest worker count; per-worker tables are sized by it (the config caps `workers` at 256).
inline constexpr unsigned max_workers = 256;

/// One worker's share of a backend's request statistics (metrics). Written only by that
/// worker's thread with single-writer bumps, read by the scrape on any thread. Aligned so that
/// two workers' blocks never share a cache line.
struct alignas(64) backend_worker_stats {
  std::array<std::atomic<std::uint64_t>, 5> responses{};  ///< by status class 1xx..5xx
  latency_histogram request;   ///< whole request as the downstream saw it
  latency_histogram upstream;  ///< upstream time of the answering attempt
};

/// A backend is created by its cluster and lives as long as any snapshot or lease refers to it
/// (shared_ptr). Identity is the configured address text; weight is immutable, a weight change
/// makes a new backend object. Thread-safety: all mutable state is atomic.
class backend : public std::enable_shared_from_this<backend> {
 public:
  backend(address addr, std::uint32_t weight) : addr_(std::move(addr)), weight_(weight) {}
  ~backend();
  backend(const backend&) = delete;
  backend& operator=(const backend&) = delete;

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

  backend_health& health() noexcept { return health_; }
  const backend_health& health() const noexcept { return health_; }
  /// draining > ejected > unhealthy > healthy.
  health_state state() const noexcept {
    if (health_.draining.load(std::memory_order_relaxed)) return health_state::draining;
    if (health_.ejected.load(std::memory_order_relaxed)) return health_state::ejected;
    if (!health_.checked_healthy.load(std::memory_order_relaxed)) return health_state::unhealthy;
    return health_state::healthy;
  }
  /// May take new requests: not draining, not ejected, passing its active checks.
  bool eligible() const noexcept { return state() == health_state::healthy; }

  /// Passive health, called by `pool::lease::report` on worker threads. A success clears the
  /// failure streak (a single load when already clear); a failure goes to the observer, if any.
  void note_success() noexcept {
    if (health_.consecutive_failures.load(std::memory_order_relaxed) != 0)
      health_.consecutive_failures.store(0, std::memory_order_relaxed);
  }
  void note_failure(outcome o) noexcept {
    if (auto obs = observer_.load(std::memory_order_acquire)) obs->on_failure(*this, o);
  }
  /// Set by the owning cluster; a reloaded cluster that takes the backend over sets its own
  /// while workers may be reporting (hence atomic; loaded only on failures).
  void set_observer(std::shared_ptr<backend_observer> o) noexcept {
    observer_.store(std::move(o), std::memory_order_release);
  }
  /// Takes over the health verdicts of `other`, the backend this one replaces after a weight
  /// change. Control plane only, before this backend is published.
  void copy_health_from(const backend& other) noexcept;

  /// The statistics block of `worker`, made on that worker's first request to this backend
  /// (one allocation per backend and worker, ever). Call only on worker `worker`'s thread.
  /// Returns nullptr when worker >= max_workers.
  backend_worker_stats* worker_stats(unsigned worker) {
    if (worker >= max_workers) return nullptr;
    // Only this thread stores the slot, so a relaxed load sees its own earlier store.
    auto* p = per_worker_[worker].load(std::memory_order_relaxed);
    return p ? p : make_worker_stats(worker);
  }
  /// Read side (any thread): the block of `worker`, or nullptr if that worker never used this
  /// backend or worker >= max_workers.
  const backend_worker_stats* worker_stats_if(unsigned worker) const noexcept {
    return worker < max_workers ? per_worker_[worker].load(std::memory_order_acquire) : nullptr;
  }

 private:
  address addr_;
  std::uint32_t weight_;
  std::atomic<std::uint32_t> active_{0};
  backend_stats stats_;
  backend_health health_;
  std::atomic<std::shared_ptr<backend_observer>> observer_;
  backend_worker_stats* make_worker_stats(unsigned worker);
  // Read by every worker, written once per worker: kept off the line of the hot counters.
  alignas(64) std::array<std::atomic<backend_worker_stats*>, max_workers> per_worker_{};
};

using backend_ptr = std::shared_ptr<backend>;

}  // namespace sluice::core
