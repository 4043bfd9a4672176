// Consistent hashing ring (ketama-like): the same ctx.hash goes to the same backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "sluice/balance/policy.hpp"

namespace sluice::balance {

inline constexpr std::uint32_t ring_hash_points_per_weight = 160;
inline constexpr std::size_t ring_hash_max_points = std::size_t{1} << 20;

/// Each backend gets points_per_weight * weight points on a 64-bit ring, placed by hashing its
/// name (address text), so a backend keeps its points across rebuilds and removing one backend
/// only moves the keys that were on it. When the total exceeds `max_points`, every backend's
/// count is scaled down proportionally (at least 1 point each); then a membership change also
/// moves some keys between surviving backends. pick() returns the owner of the first point
/// >= ctx.hash (wrapping); with ctx.exclude it walks on to the next non-excluded backend.
std::unique_ptr<policy> make_ring_hash(std::span<const core::backend_ptr> ready,
                                       std::uint32_t points_per_weight = ring_hash_points_per_weight,
                                       std::size_t max_points = ring_hash_max_points);
/// Same with effective weights (see make_policy); empty `weights`: the backends' weights.
std::unique_ptr<policy> make_ring_hash(std::span<const core::backend_ptr> ready,
                                       std::span<const std::uint32_t> weights,
                                       std::uint32_t points_per_weight = ring_hash_points_per_weight,
                                       std::size_t max_points = ring_hash_max_points);

}  // namespace sluice::balance
