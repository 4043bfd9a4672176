#include "sluice/balance/random.hpp"

#include <algorithm>
#include <atomic>

namespace sluice::balance {
namespace {

struct thread_rng {
  std::uint64_t state = 0;
  bool seeded = false;
};

// Constant-initialised, so access needs no TLS guard.
thread_local thread_rng rng_;

std::atomic<std::uint64_t> seed_sequence_{0x243f6a8885a308d3ULL};

// Uniform value in [0, bound) from 64 random bits (Lemire's multiply-shift; the bias is
// < bound / 2^64, irrelevant for weights).
std::uint64_t scale(std::uint64_t r, std::uint64_t bound) noexcept {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(r) * bound) >> 64);
}

class random_policy final : public policy {
 public:
  random_policy(std::span<const core::backend_ptr> ready, std::span<const std::uint32_t> weights)
      : backends_(ready.begin(), ready.end()),
        index_(std::span<const std::uint32_t>(effective_weights(ready, weights))) {}

  core::backend* pick(const pick_context& ctx) noexcept override {
    const std::size_t n = backends_.size();
    if (n == 0) return nullptr;
    std::size_t i = index_.draw(thread_random());
    if (ctx.exclude.empty() || !ctx.excluded(backends_[i].get())) return backends_[i].get();
    for (int tries = 0; tries < 3; ++tries) {
      i = index_.draw(thread_random());
      if (!ctx.excluded(backends_[i].get())) return backends_[i].get();
    }
    for (std::size_t k = 1; k <= n; ++k) {
      core::backend* b = backends_[(i + k) % n].get();
      if (!ctx.excluded(b)) return b;
    }
    return nullptr;
  }

 private:
  std::vector<core::backend_ptr> backends_;
  weighted_index index_;
};

}  // namespace

std::uint64_t thread_random() noexcept {
  thread_rng& r = rng_;
  if (!r.seeded) {
    // Distinct streams per thread: a process-wide sequence plus this thread's TLS address.
    r.state = seed_sequence_.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed) ^
              reinterpret_cast<std::uintptr_t>(&r);
    r.seeded = true;
  }
  // splitmix64
  std::uint64_t z = (r.state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void seed_thread_random(std::uint64_t seed) noexcept {
  rng_.state = seed;
  rng_.seeded = true;
}

weighted_index::weighted_index(std::span<const core::backend_ptr> ready) {
  prefix_.reserve(ready.size());
  std::uint64_t sum = 0;
  for (const auto& b : ready) {
    sum += std::max<std::uint32_t>(b->weight(), 1);  // weight 0 counts as 1
    prefix_.push_back(sum);
  }
}

weighted_index::weighted_index(std::span<const std::uint32_t> weights) {
  prefix_.reserve(weights.size());
  std::uint64_t sum = 0;
  for (auto w : weights) {
    sum += std::max<std::uint32_t>(w, 1);
    prefix_.push_back(sum);
  }
}

std::size_t weighted_index::find(std::uint64_t point) const noexcept {
  return static_cast<std::size_t>(
      std::upper_bound(prefix_.begin(), prefix_.end(), point) - prefix_.begin());
}

std::size_t weighted_index::draw(std::uint64_t r) const noexcept {
  return find(scale(r, prefix_.back()));
}

std::size_t weighted_index::draw_other(std::uint64_t r, std::size_t other) const noexcept {
  // Draw over the total without `other`'s span, then step over that span.
  const std::uint64_t end = prefix_[other];
  const std::uint64_t begin = other == 0 ? 0 : prefix_[other - 1];
  std::uint64_t point = scale(r, prefix_.back() - (end - begin));
  if (point >= begin) point += end - begin;
  return find(point);
}

std::unique_ptr<policy> make_random(std::span<const core::backend_ptr> ready) {
  return std::make_unique<random_policy>(ready, std::span<const std::uint32_t>{});
}

std::unique_ptr<policy> make_random(std::span<const core::backend_ptr> ready,
                                    std::span<const std::uint32_t> weights) {
  return std::make_unique<random_policy>(ready, weights);
}

}  // namespace sluice::balance
