// Weighted least-connections: the backend with the lowest (active + 1) / weight.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "sluice/balance/policy.hpp"

namespace sluice::balance {

/// Picks the backend minimising (active + 1) / weight (compared by cross-multiplication).
/// Each pick starts its scan at a rotating offset, so equally loaded backends share requests in
/// turn. O(n) per pick; reads the backends' atomic active counts, which other workers change
/// concurrently, so under contention the choice is "least loaded at the time of the read".
/// Edge: when requests never overlap (all idle), the heaviest backend takes every request
/// (1/w is smallest), as with HAProxy's leastconn; equal weights rotate.
std::unique_ptr<policy> make_least_conn(std::span<const core::backend_ptr> ready);
/// Same with effective weights (see make_policy); empty `weights`: the backends' weights.
std::unique_ptr<policy> make_least_conn(std::span<const core::backend_ptr> ready,
                                        std::span<const std::uint32_t> weights);

}  // namespace sluice::balance
