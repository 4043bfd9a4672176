// Weighted random choice, plus the per-thread generator and weighted draw it shares with p2c.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "sluice/balance/policy.hpp"

namespace sluice::balance {

/// Next value of this thread's generator (splitmix64). Seeded on first use from a process-wide
/// sequence, so threads never share a stream. Lock-free, no allocation.
std::uint64_t thread_random() noexcept;

/// Reseeds this thread's generator (deterministic tests and simulations).
void seed_thread_random(std::uint64_t seed) noexcept;

/// Prefix sums of backend weights: maps a uniform 64-bit value to an index with probability
/// weight / total, in O(log n). Immutable once built.
class weighted_index {
 public:
  explicit weighted_index(std::span<const core::backend_ptr> ready);
  /// Over explicit weights (0 counts as 1).
  explicit weighted_index(std::span<const std::uint32_t> weights);

  std::size_t size() const noexcept { return prefix_.size(); }
  /// Index drawn by weight from `r` (uniform over 64 bits). Requires size() > 0.
  std::size_t draw(std::uint64_t r) const noexcept;
  /// Index drawn by weight among all but `other`. Requires size() > 1.
  std::size_t draw_other(std::uint64_t r, std::size_t other) const noexcept;

 private:
  std::size_t find(std::uint64_t point) const noexcept;

  std::vector<std::uint64_t> prefix_;  // prefix_[i] = w_0 + ... + w_i
};

/// Picks a backend at random with probability proportional to its weight. An excluded draw is
/// redrawn a few times, then the next non-excluded backend after it is taken.
std::unique_ptr<policy> make_random(std::span<const core::backend_ptr> ready);
/// Same with effective weights (see make_policy); empty `weights`: the backends' weights.
std::unique_ptr<policy> make_random(std::span<const core::backend_ptr> ready,
                                    std::span<const std::uint32_t> weights);

}  // namespace sluice::balance
