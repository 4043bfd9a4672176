#include "sluice/balance/least_conn.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

namespace sluice::balance {
namespace {

class least_conn final : public policy {
 public:
  least_conn(std::span<const core::backend_ptr> ready, std::span<const std::uint32_t> weights)
      : backends_(ready.begin(), ready.end()), weights_(effective_weights(ready, weights)) {}

  core::backend* pick(const pick_context& ctx) noexcept override {
    const std::size_t n = backends_.size();
    if (n == 0) return nullptr;
    // Starting at a rotating offset and keeping the first of equals gives ties a fair share
    // (HAProxy's leastconn does the same by reinserting the chosen server behind its equals).
    const std::size_t start = next_.fetch_add(1, std::memory_order_relaxed) % n;
    core::backend* best = nullptr;
    std::uint64_t best_load = 0, best_weight = 1;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (start + k) % n;
      core::backend* b = backends_[i].get();
      if (!ctx.exclude.empty() && ctx.excluded(b)) continue;
      const std::uint64_t load = std::uint64_t{b->active()} + 1;
      const std::uint64_t weight = weights_[i];
      // load / weight < best_load / best_weight, without division or floats.
      if (!best || load * best_weight < best_load * weight) {
        best = b;
        best_load = load;
        best_weight = weight;
      }
    }
    return best;
  }

 private:
  std::vector<core::backend_ptr> backends_;
  std::vector<std::uint32_t> weights_;  // effective, >= 1
  alignas(64) std::atomic<std::size_t> next_{0};
};

}  // namespace

std::unique_ptr<policy> make_least_conn(std::span<const core::backend_ptr> ready) {
  return std::make_unique<least_conn>(ready, std::span<const std::uint32_t>{});
}

std::unique_ptr<policy> make_least_conn(std::span<const core::backend_ptr> ready,
                                        std::span<const std::uint32_t> weights) {
  return std::make_unique<least_conn>(ready, weights);
}

}  // namespace sluice::balance
