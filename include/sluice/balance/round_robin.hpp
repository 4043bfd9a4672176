// Smooth weighted round-robin (nginx's order), precomputed into a table so pick is one fetch_add.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "sluice/balance/policy.hpp"

namespace sluice::balance {

/// Default cap on the precomputed sequence; longer cycles are scaled down proportionally.
inline constexpr std::size_t round_robin_max_table = 65536;

/// Builds nginx's smooth weighted round-robin over `ready`: weights 5,1,1 give a a b a c a a.
/// The cycle (sum of weights / gcd) is computed once; when it is longer than `max_table`, the
/// weights are scaled down proportionally (each stays >= 1), so the ratio is approximate.
/// Very large sets (cycle length * backends > 2^24) get an earliest-deadline order instead of
/// nginx's: equally smooth and exactly weighted, built in O(log n) per entry.
/// With ctx.exclude, the pick walks forward in the sequence to the next backend not excluded.
/// Thread-safety: pick() does one relaxed fetch_add on a shared counter, no locks.
std::unique_ptr<policy> make_round_robin(std::span<const core::backend_ptr> ready,
                                         std::size_t max_table = round_robin_max_table);
/// Same with effective weights (see make_policy); empty `weights`: the backends' weights.
std::unique_ptr<policy> make_round_robin(std::span<const core::backend_ptr> ready,
                                         std::span<const std::uint32_t> weights,
                                         std::size_t max_table = round_robin_max_table);

}  // namespace sluice::balance
