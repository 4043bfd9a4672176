// Power of two choices: two distinct weighted random candidates, the less loaded one wins.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "sluice/balance/policy.hpp"

namespace sluice::balance {

/// Draws two distinct backends by weight and returns the one with the lower active / weight
/// (the first drawn on a tie, so idle backends share by weight). O(log n) per pick. With a
/// single non-excluded backend, returns it.
std::unique_ptr<policy> make_p2c(std::span<const core::backend_ptr> ready);
/// Same with effective weights (see make_policy); empty `weights`: the backends' weights.
std::unique_ptr<policy> make_p2c(std::span<const core::backend_ptr> ready,
                                 std::span<const std::uint32_t> weights);

}  // namespace sluice::balance
