#include "sluice/balance/policy.hpp"

#include <algorithm>

#include "sluice/balance/least_conn.hpp"
#include "sluice/balance/p2c.hpp"
#include "sluice/balance/random.hpp"
#include "sluice/balance/ring_hash.hpp"
#include "sluice/balance/round_robin.hpp"

namespace sluice::balance {

std::unique_ptr<policy> make_policy(config::policy_kind kind,
                                    std::span<const core::backend_ptr> ready) {
  return make_policy(kind, ready, {});
}

std::unique_ptr<policy> make_policy(config::policy_kind kind,
                                    std::span<const core::backend_ptr> ready,
                                    std::span<const std::uint32_t> weights) {
  switch (kind) {
    case config::policy_kind::round_robin: return make_round_robin(ready, weights);
    case config::policy_kind::least_conn: return make_least_conn(ready, weights);
    case config::policy_kind::random: return make_random(ready, weights);
    case config::policy_kind::p2c: return make_p2c(ready, weights);
    case config::policy_kind::ring_hash: return make_ring_hash(ready, weights);
  }
  return make_round_robin(ready, weights);  // unreachable with a valid enum value
}

std::vector<std::uint32_t> effective_weights(std::span<const core::backend_ptr> ready,
                                             std::span<const std::uint32_t> weights) {
  std::vector<std::uint32_t> out;
  out.reserve(ready.size());
  const bool given = weights.size() == ready.size();
  for (std::size_t i = 0; i < ready.size(); ++i)
    out.push_back(std::max<std::uint32_t>(given ? weights[i] : ready[i]->weight(), 1));
  return out;
}

std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

std::uint64_t hash_key(std::string_view key) noexcept {
  // FNV-1a alone clusters on short keys that differ in the last byte (IP addresses); the
  // finalizer spreads them. Both are fixed by spec, so the value is stable everywhere.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return mix64(h);
}

}  // namespace sluice::balance
