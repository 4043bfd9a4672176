// The balancing policy interface: an immutable selector built from a cluster's ready backends.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/core/backend.hpp"

namespace sluice::balance {

struct pick_context {
  /// Request hash for ring_hash (client IP, header or cookie); ignored by other policies.
  std::uint64_t hash = 0;
  /// Backends already tried for this request; a policy skips them while others remain.
  std::span<core::backend* const> exclude{};

  /// True when `b` was already tried for this request (linear scan: the list is max_tries short).
  bool excluded(const core::backend* b) const noexcept {
    for (const core::backend* e : exclude)
      if (e == b) return true;
    return false;
  }
};

/// Built once per snapshot from the ready set, then used by every worker at once.
/// Thread-safety: pick() is safe to call concurrently; it never locks and never allocates.
class policy {
 public:
  virtual ~policy() = default;
  /// Returns a backend not in ctx.exclude, or nullptr when every backend is excluded or the
  /// set is empty. The pointer stays valid as long as the snapshot that owns this policy.
  virtual core::backend* pick(const pick_context& ctx) noexcept = 0;
};

/// Builds the policy `kind` over `ready` (which may be empty). Weights come from the backends.
std::unique_ptr<policy> make_policy(config::policy_kind kind,
                                    std::span<const core::backend_ptr> ready);

/// Same, with effective weights (slow start): `weights[i]` replaces ready[i]->weight(). An empty
/// `weights` means the backends' own weights; a size other than ready.size() is treated as
/// empty. A weight of 0 counts as 1.
std::unique_ptr<policy> make_policy(config::policy_kind kind,
                                    std::span<const core::backend_ptr> ready,
                                    std::span<const std::uint32_t> weights);

/// The weights a policy uses: `weights` when it matches `ready` in size, else each backend's
/// weight(); every value at least 1.
std::vector<std::uint32_t> effective_weights(std::span<const core::backend_ptr> ready,
                                             std::span<const std::uint32_t> weights = {});

/// 64-bit hash used for ring_hash keys (stable across runs and machines): FNV-1a 64 followed
/// by a 64-bit finalizer so that short, similar keys (IP addresses) spread over the whole ring.
std::uint64_t hash_key(std::string_view key) noexcept;

/// The finalizer of hash_key alone: a bijective 64-bit mixer (MurmurHash3 fmix64).
std::uint64_t mix64(std::uint64_t x) noexcept;

}  // namespace sluice::balance
