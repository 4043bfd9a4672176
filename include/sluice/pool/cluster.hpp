// A cluster: membership + policy, published to the data plane as one immutable snapshot.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sluice/balance/policy.hpp"
#include "sluice/config/config.hpp"
#include "sluice/core/backend.hpp"

namespace sluice::pool {

/// What the data plane reads. Immutable once published.
struct snapshot {
  std::uint64_t version = 0;
  std::vector<core::backend_ptr> backends;  ///< every known backend
  std::vector<core::backend_ptr> ready;     ///< the ones the policy picks from
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

/// Owns the backends of one cluster. update() runs on the control plane; current() is read by
/// workers through a `snapshot_cache`. Backends that survive an update keep their objects
/// (counters, active count) as long as their address and weight are unchanged.
class cluster {
 public:
  explicit cluster(config::cluster cfg);

  const config::cluster& config() const noexcept { return cfg_; }
  const std::string& name() const noexcept { return cfg_.name; }

  /// Replaces the membership with `endpoints` and publishes a new snapshot.
  void update(const std::vector<endpoint>& endpoints);

  /// The latest snapshot (never null after construction).
  std::shared_ptr<const snapshot> current() const;
  /// Bumped on every publish; lets workers skip the shared_ptr load when nothing changed.
  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }

 private:
  void publish(std::vector<core::backend_ptr> backends);

  config::cluster cfg_;
  mutable std::mutex mutex_;  // guards current_ (control plane and cache refresh only)
  std::shared_ptr<const snapshot> current_;
  std::atomic<std::uint64_t> version_{0};
};

/// Per-worker view of one cluster: re-reads the shared snapshot only when its version moved,
/// so the request path does one relaxed-acquire load and no locking in the steady state.
class snapshot_cache {
 public:
  explicit snapshot_cache(const cluster& c) : cluster_(&c) {}
  const snapshot& get() {
    auto v = cluster_->version();
    if (v != seen_ || !snap_) {
      snap_ = cluster_->current();
      seen_ = v;
    }
    return *snap_;
  }
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

}  // namespace sluice::pool
