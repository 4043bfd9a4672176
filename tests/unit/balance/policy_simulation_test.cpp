// Seeded randomized simulation of requests arriving and finishing (after Envoy's
// load_balancer_simulation_test): compares how evenly each policy spreads in-flight requests.
#include "sluice/balance/policy.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "sluice/balance/random.hpp"

using namespace sluice;

namespace {

std::vector<core::backend_ptr> make_backends(std::size_t n) {
  std::vector<core::backend_ptr> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(std::make_shared<core::backend>(
        *core::resolve("127.0.0.1:" + std::to_string(8001 + i)), 1));
  return out;
}

struct result {
  std::uint32_t max_spread = 0;  // worst (max active - min active) seen
  double mean_spread = 0;
};

// Every tick 0..6 requests arrive; each lasts 1..200 ticks (skewed towards short ones, so
// backends drain unevenly). Same seed → same arrivals and durations for every policy.
result simulate(config::policy_kind kind, std::uint64_t seed) {
  auto bs = make_backends(8);
  auto p = balance::make_policy(kind, bs);
  balance::seed_thread_random(seed);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> arrivals(0, 6);
  std::exponential_distribution<double> duration(1.0 / 40);

  using finish = std::pair<int, core::backend*>;  // (tick, backend)
  std::priority_queue<finish, std::vector<finish>, std::greater<>> running;
  result r;
  double spread_sum = 0;
  const int ticks = 20000;
  for (int t = 0; t < ticks; ++t) {
    while (!running.empty() && running.top().first <= t) {
      running.top().second->add_active(-1);
      running.pop();
    }
    for (int k = arrivals(rng); k > 0; --k) {
      core::backend* b = p->pick({});
      REQUIRE(b != nullptr);
      b->add_active(1);
      const int d = 1 + std::min(199, static_cast<int>(duration(rng)));
      running.emplace(t + d, b);
    }
    std::uint32_t lo = ~0u, hi = 0;
    for (const auto& b : bs) {
      lo = std::min(lo, b->active());
      hi = std::max(hi, b->active());
    }
    r.max_spread = std::max(r.max_spread, hi - lo);
    spread_sum += hi - lo;
  }
  r.mean_spread = spread_sum / ticks;
  while (!running.empty()) {
    running.top().second->add_active(-1);
    running.pop();
  }
  return r;
}

}  // namespace

TEST_CASE("least_conn and p2c keep in-flight requests even", "[policy][simulation]") {
  for (std::uint64_t seed : {1ULL, 2ULL, 3ULL}) {
    CAPTURE(seed);
    const result lc = simulate(config::policy_kind::least_conn, seed);
    const result p2 = simulate(config::policy_kind::p2c, seed);
    const result rnd = simulate(config::policy_kind::random, seed);
    const result rr = simulate(config::policy_kind::round_robin, seed);
    INFO("max spread least_conn " << lc.max_spread << " p2c " << p2.max_spread << " random "
                                  << rnd.max_spread << " round_robin " << rr.max_spread);
    INFO("mean spread least_conn " << lc.mean_spread << " p2c " << p2.mean_spread << " random "
                                   << rnd.mean_spread << " round_robin " << rr.mean_spread);
    CHECK(lc.max_spread <= 10);
    CHECK(p2.max_spread < rnd.max_spread);
    CHECK(lc.max_spread < rnd.max_spread);
    CHECK(lc.mean_spread * 3 < rnd.mean_spread);
    CHECK(p2.mean_spread * 2 < rnd.mean_spread);
    CHECK(lc.mean_spread <= p2.mean_spread);
  }
}
