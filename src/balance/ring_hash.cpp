#include "sluice/balance/ring_hash.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace sluice::balance {
namespace {

struct point {
  std::uint64_t hash;
  std::uint64_t owner_hash;  // orders equal points independently of the input order
  std::uint32_t owner;       // index into backends_
};

class ring_hash final : public policy {
 public:
  ring_hash(std::span<const core::backend_ptr> ready, std::span<const std::uint32_t> weights,
            std::uint32_t per_weight, std::size_t max_points)
      : backends_(ready.begin(), ready.end()) {
    if (backends_.empty()) return;
    const std::vector<std::uint32_t> w = effective_weights(ready, weights);
    per_weight = std::max<std::uint32_t>(per_weight, 1);
    std::uint64_t wanted = 0;
    for (auto x : w) wanted += std::uint64_t{per_weight} * x;
    const std::uint64_t cap = std::max<std::uint64_t>(max_points, backends_.size());

    std::vector<point> points;
    points.reserve(std::min(wanted, cap) + backends_.size());
    for (std::uint32_t i = 0; i < backends_.size(); ++i) {
      std::uint64_t count = std::uint64_t{per_weight} * w[i];
      if (wanted > cap) count = std::max<std::uint64_t>(count * cap / wanted, 1);
      // The k-th point of a backend depends only on its name and k: a backend keeps its
      // points whatever else is on the ring.
      const std::uint64_t base = hash_key(backends_[i]->name());
      for (std::uint64_t k = 0; k < count; ++k)
        points.push_back({mix64(base + (k + 1) * 0x9e3779b97f4a7c15ULL), base, i});
    }
    std::sort(points.begin(), points.end(), [](const point& x, const point& y) {
      return x.hash != y.hash ? x.hash < y.hash : x.owner_hash < y.owner_hash;
    });
    hashes_.reserve(points.size());
    owners_.reserve(points.size());
    for (const auto& p : points) {
      hashes_.push_back(p.hash);
      owners_.push_back(p.owner);
    }
  }

  core::backend* pick(const pick_context& ctx) noexcept override {
    const std::size_t len = hashes_.size();
    if (len == 0) return nullptr;
    std::size_t pos = static_cast<std::size_t>(
        std::lower_bound(hashes_.begin(), hashes_.end(), ctx.hash) - hashes_.begin());
    if (pos == len) pos = 0;  // past the last point: wrap to the first
    core::backend* b = backends_[owners_[pos]].get();
    if (ctx.exclude.empty() || !ctx.excluded(b)) return b;

    // Walking a ring whose every backend is excluded would visit every point: check first.
    if (std::all_of(backends_.begin(), backends_.end(),
                    [&](const core::backend_ptr& x) { return ctx.excluded(x.get()); }))
      return nullptr;
    for (std::size_t k = 1; k < len; ++k) {
      b = backends_[owners_[(pos + k) % len]].get();
      if (!ctx.excluded(b)) return b;
    }
    return nullptr;  // not reached: some backend is not excluded and owns >= 1 point
  }

 private:
  std::vector<core::backend_ptr> backends_;
  std::vector<std::uint64_t> hashes_;  // sorted ring positions
  std::vector<std::uint32_t> owners_;  // owners_[i] owns hashes_[i]
};

}  // namespace

std::unique_ptr<policy> make_ring_hash(std::span<const core::backend_ptr> ready,
                                       std::uint32_t points_per_weight, std::size_t max_points) {
  return std::make_unique<ring_hash>(ready, std::span<const std::uint32_t>{}, points_per_weight,
                                     max_points);
}

std::unique_ptr<policy> make_ring_hash(std::span<const core::backend_ptr> ready,
                                       std::span<const std::uint32_t> weights,
                                       std::uint32_t points_per_weight, std::size_t max_points) {
  return std::make_unique<ring_hash>(ready, weights, points_per_weight, max_points);
}

}  // namespace sluice::balance
