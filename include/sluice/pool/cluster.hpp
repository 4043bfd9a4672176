// A cluster: membership + health + policy, published to the data plane as one immutable snapshot.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sluice/balance/policy.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/backend.hpp"

namespace sluice::pool {

/// What the data plane reads. Immutable once published.
struct snapshot {
  std::uint64_t version = 0;
  std::vector<core::backend_ptr> backends;  ///< every known backend (health: backend::state())
  /// The ones the policy picks from: the eligible backends (not draining, not ejected, passing
  /// active checks). In panic (none eligible): empty with `panic: fail`, every non-draining
  /// backend with `panic: spread`.
  std::vector<core::backend_ptr> ready;
  /// Effective weights the policy was built with, one per `ready` backend, in units of
  /// 1/slow_start_scale while some backend ramps; empty: the backends' own weights.
  std::vector<std::uint32_t> weights;
  bool panic = false;                       ///< backends exist but none is eligible
  std::unique_ptr<balance::policy> policy;  ///< built over `ready`

  core::backend* pick(const balance::pick_context& ctx) const noexcept {
    return policy ? policy->pick(ctx) : nullptr;
  }
};

/// An endpoint as delivered by a discovery source (always the whole set, never a delta).
struct endpoint {
  core::address address;
  std::uint32_t weight = 1;
};

class cluster;

/// Per-worker view of one cluster: re-reads the shared snapshot only when its version moved,
/// so the request path does one relaxed-acquire load and no locking in the steady state.
/// Each worker uses only its own (see cluster::cache), so it needs no synchronisation.
class alignas(64) snapshot_cache {
 public:
  explicit snapshot_cache(const cluster& c) : cluster_(&c) {}
  inline const snapshot& get();
  /// Keeps the snapshot alive for the caller (e.g. across an async request).
  std::shared_ptr<const snapshot> hold() {
    get();
    return snap_;
  }
  const cluster& owner() const noexcept { return *cluster_; }

 private:
  const cluster* cluster_;
  std::uint64_t seen_ = ~std::uint64_t{0};
  std::shared_ptr<const snapshot> snap_;
};

/// Owns the backends of one cluster. update() runs on the control plane; current() is read by
/// workers through a `snapshot_cache`. Backends that survive an update keep their objects
/// (counters, active count, health) as long as their address and weight are unchanged; a
/// weight change makes a new object that takes over the old one's health.
///
/// Health: every publish derives the ready set from the backends' health (core::backend_health,
/// written by the health module and by set_draining) and ramps the weight of a backend that
/// (re)enters the ready set over `slow_start` (only when another backend is already serving).
/// Thread-safety: every member function may be called from any thread; update(), refresh() and
/// set_draining() serialise among themselves (a mutex the workers never take).
class cluster {
 public:
  using clock = std::chrono::steady_clock;
  /// Called on a worker thread when a backend's passive failure streak reaches the outlier
  /// threshold (and again at every further multiple of it). Must be cheap and must not throw:
  /// it is meant to post the decision to the control plane.
  using failure_streak_handler = std::function<void(core::backend_ptr)>;

  /// `workers`: how many per-worker snapshot caches to make (see cache()). With a
  /// `predecessor` (the cluster of the same name before a configuration reload), backends at
  /// the same address and weight are taken over as they are (health, counters, pooled
  /// connections keyed by them stay valid); the predecessor should no longer be updated.
  explicit cluster(config::cluster cfg, unsigned workers = 1,
                   const cluster* predecessor = nullptr);
  ~cluster();

  /// Worker `w`'s snapshot cache; only worker w may use it. `w` < the `workers` given.
  snapshot_cache& cache(unsigned w) noexcept { return caches_[w]; }
  unsigned workers() const noexcept { return workers_; }

  /// The cluster's slot in the metrics registry (stable across reloads for the same name);
  /// `no_slot` until set.
  static constexpr std::size_t no_slot = ~std::size_t{0};
  std::size_t metrics_slot() const noexcept { return metrics_slot_; }
  void set_metrics_slot(std::size_t s) noexcept { metrics_slot_ = s; }

  const config::cluster& config() const noexcept { return cfg_; }
  const std::string& name() const noexcept { return cfg_.name; }

  /// Replaces the membership with `endpoints` and publishes a new snapshot, then calls the
  /// membership watchers (on the calling thread, without locks held).
  void update(const std::vector<endpoint>& endpoints) { update(endpoints, clock::now()); }
  void update(const std::vector<endpoint>& endpoints, clock::time_point now);

  /// Publishes a new snapshot from the backends' current health (after a health flip, an
  /// ejection or a return, and at every slow-start step).
  void refresh(clock::time_point now = clock::now());

  /// Admin: a draining backend leaves the ready set (its in-flight requests finish); undraining
  /// brings it back (with slow start). Applies to every backend with that address text; publishes
  /// when something changed. Returns false for an address the cluster doesn't know.
  bool set_draining(const std::string& address, bool draining);

  /// True while some ready backend is still in its slow-start window: the owner of the cluster
  /// should call refresh() every slow_start / 10 until it turns false.
  bool ramping() const noexcept { return ramping_.load(std::memory_order_acquire); }

  /// Registers `f`, called after every update(); returns an id for unwatch().
  std::uint64_t watch(std::function<void()> f);
  void unwatch(std::uint64_t id);

  /// Installs (or, with an empty function, removes) the passive-health handler. Removal waits
  /// for a call in progress, so after it returns the old handler is never called again.
  void on_failure_streak(failure_streak_handler f);

  /// The latest snapshot (never null after construction).
  std::shared_ptr<const snapshot> current() const;
  /// Bumped on every publish; lets workers skip the shared_ptr load when nothing changed.
  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }

 private:
  struct failure_feed;
  void publish(std::vector<core::backend_ptr> backends, clock::time_point now);

  config::cluster cfg_;
  unsigned workers_;
  std::vector<snapshot_cache> caches_;
  std::size_t metrics_slot_ = no_slot;
  std::shared_ptr<failure_feed> feed_;  // attached to every backend; null without `outlier`
  std::mutex update_mutex_;   // serialises update / refresh / set_draining (control plane)
  mutable std::mutex mutex_;  // guards current_ (control plane and cache refresh only)
  std::shared_ptr<const snapshot> current_;
  std::atomic<std::uint64_t> version_{0};
  std::atomic<bool> ramping_{false};
  std::mutex watch_mutex_;
  std::uint64_t next_watch_ = 1;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> watchers_;
};

const snapshot& snapshot_cache::get() {
  auto v = cluster_->version();
  if (v != seen_ || !snap_) {
    snap_ = cluster_->current();
    seen_ = v;
  }
  return *snap_;
}

}  // namespace sluice::pool
