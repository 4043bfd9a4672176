#include "sluice/balance/p2c.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sluice/balance/random.hpp"

namespace sluice::balance {
namespace {

constexpr std::size_t none = ~std::size_t{0};

class p2c final : public policy {
 public:
  p2c(std::span<const core::backend_ptr> ready, std::span<const std::uint32_t> weights)
      : backends_(ready.begin(), ready.end()),
        weights_(effective_weights(ready, weights)),
        index_(std::span<const std::uint32_t>(weights_)) {}

  core::backend* pick(const pick_context& ctx) noexcept override {
    const std::size_t n = backends_.size();
    if (n == 0) return nullptr;
    if (n == 1) return usable(0, ctx) ? backends_[0].get() : nullptr;

    std::size_t a = none;
    for (int tries = 0; tries < 4 && a == none; ++tries) {
      const std::size_t i = index_.draw(thread_random());
      if (usable(i, ctx)) a = i;
    }
    // Most candidates are excluded: fall back to the least loaded of the rest.
    if (a == none) return least_loaded(ctx);

    std::size_t b = none;
    for (int tries = 0; tries < 4 && b == none; ++tries) {
      const std::size_t i = index_.draw_other(thread_random(), a);
      if (usable(i, ctx)) b = i;
    }
    if (b == none) return backends_[a].get();  // a may well be the only one left
    return lighter(b, a) ? backends_[b].get() : backends_[a].get();
  }

 private:
  bool usable(std::size_t i, const pick_context& ctx) const noexcept {
    return ctx.exclude.empty() || !ctx.excluded(backends_[i].get());
  }

  // active_x / w_x < active_y / w_y, by cross-multiplication. Plain active (not active + 1):
  // idle candidates tie, the first (weighted) draw wins, so a quiet cluster is spread by weight.
  bool lighter(std::size_t x, std::size_t y) const noexcept {
    return std::uint64_t{backends_[x]->active()} * weights_[y] <
           std::uint64_t{backends_[y]->active()} * weights_[x];
  }

  core::backend* least_loaded(const pick_context& ctx) const noexcept {
    std::size_t best = none;
    for (std::size_t i = 0; i < backends_.size(); ++i)
      if (usable(i, ctx) && (best == none || lighter(i, best))) best = i;
    return best == none ? nullptr : backends_[best].get();
  }

  std::vector<core::backend_ptr> backends_;
  std::vector<std::uint32_t> weights_;  // effective, >= 1
  weighted_index index_;
};

}  // namespace

std::unique_ptr<policy> make_p2c(std::span<const core::backend_ptr> ready) {
  return std::make_unique<p2c>(ready, std::span<const std::uint32_t>{});
}

std::unique_ptr<policy> make_p2c(std::span<const core::backend_ptr> ready,
                                 std::span<const std::uint32_t> weights) {
  return std::make_unique<p2c>(ready, weights);
}

}  // namespace sluice::balance
