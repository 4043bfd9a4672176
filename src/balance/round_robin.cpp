#include "sluice/balance/round_robin.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <queue>
#include <vector>

namespace sluice::balance {
namespace {

// nginx's sequence costs O(n) per step; when steps * backends exceeds this, the table is built
// in an equivalent O(log n)-per-step order instead, so a rebuild stays in the milliseconds.
constexpr std::uint64_t build_budget = std::uint64_t{1} << 24;

std::vector<std::uint64_t> reduced_weights(const std::vector<std::uint32_t>& weights,
                                           std::size_t max_table) {
  std::vector<std::uint64_t> w;
  w.reserve(weights.size());
  std::uint64_t sum = 0;
  for (auto x : weights) {
    w.push_back(std::max<std::uint32_t>(x, 1));  // weight 0 counts as 1
    sum += w.back();
  }
  // Every weight stays >= 1, so a table is never shorter than the set.
  const std::uint64_t cap = std::max<std::uint64_t>(max_table, w.size());
  std::uint64_t g = 0;
  for (auto x : w) g = std::gcd(g, x);
  if (sum / g > cap) {
    for (auto& x : w) x = std::max<std::uint64_t>(x * cap / sum, 1);
    g = 0;
    for (auto x : w) g = std::gcd(g, x);
  }
  for (auto& x : w) x /= g;
  return w;
}

// For very large sets, where nginx's O(n) step is too slow even on the shortest table: earliest
// deadline first over the deadlines j / w_i (j = 1..w_i), O(log n) per step. Also smooth and
// exactly weighted over one cycle, but the order differs from nginx's.
std::vector<std::uint32_t> deadline_sequence(const std::vector<std::uint64_t>& w) {
  std::uint64_t total = 0;
  for (auto x : w) total += x;
  std::vector<std::uint64_t> taken(w.size(), 0);
  // (taken_a + 1) / w_a > (taken_b + 1) / w_b puts a behind b; the index breaks ties.
  auto later = [&](std::uint32_t a, std::uint32_t b) {
    const auto da = (taken[a] + 1) * w[b], db = (taken[b] + 1) * w[a];
    return da != db ? da > db : a > b;
  };
  std::priority_queue<std::uint32_t, std::vector<std::uint32_t>, decltype(later)> heap(later);
  for (std::uint32_t i = 0; i < w.size(); ++i) heap.push(i);
  std::vector<std::uint32_t> seq;
  seq.reserve(total);
  for (std::uint64_t step = 0; step < total; ++step) {
    const std::uint32_t i = heap.top();
    heap.pop();
    seq.push_back(i);
    if (++taken[i] < w[i]) heap.push(i);
  }
  return seq;
}

// The cycle of nginx's smooth weighted round-robin (ngx_http_upstream_get_peer): every step
// adds each weight to its current value, takes the largest (earliest on a tie) and subtracts
// the total from it. After sum(w) steps every current value is back to zero, so one cycle
// repeats forever.
std::vector<std::uint32_t> smooth_sequence(const std::vector<std::uint64_t>& w) {
  std::uint64_t total = 0;
  for (auto x : w) total += x;
  std::vector<std::uint32_t> seq;
  seq.reserve(total);
  if (std::all_of(w.begin(), w.end(), [&](auto x) { return x == w.front(); })) {
    // Equal weights (reduced to 1): the sequence is plain 0, 1, ..., n-1.
    for (std::uint32_t i = 0; i < w.size(); ++i) seq.push_back(i);
    return seq;
  }
  if (total * w.size() > build_budget) return deadline_sequence(w);
  std::vector<std::int64_t> current(w.size(), 0);
  for (std::uint64_t step = 0; step < total; ++step) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      current[i] += static_cast<std::int64_t>(w[i]);
      if (current[i] > current[best]) best = i;
    }
    current[best] -= static_cast<std::int64_t>(total);
    seq.push_back(static_cast<std::uint32_t>(best));
  }
  return seq;
}

class round_robin final : public policy {
 public:
  round_robin(std::span<const core::backend_ptr> ready, std::span<const std::uint32_t> weights,
              std::size_t max_table)
      : backends_(ready.begin(), ready.end()) {
    if (!backends_.empty())
      table_ = smooth_sequence(reduced_weights(effective_weights(ready, weights), max_table));
  }

  core::backend* pick(const pick_context& ctx) noexcept override {
    const std::size_t len = table_.size();
    if (len == 0) return nullptr;
    const std::size_t pos = next_.fetch_add(1, std::memory_order_relaxed) % len;
    core::backend* b = backends_[table_[pos]].get();
    if (ctx.exclude.empty() || !ctx.excluded(b)) return b;

    // Retry path: keep nginx's order by walking the sequence; a light backend may be far
    // away in a long table, so after a short walk fall back to the plain backend list.
    const std::size_t n = backends_.size();
    const std::size_t walk = std::min(len, 2 * n + 16);
    for (std::size_t k = 1; k < walk; ++k) {
      b = backends_[table_[(pos + k) % len]].get();
      if (!ctx.excluded(b)) return b;
    }
    for (std::size_t k = 0; k < n; ++k) {
      b = backends_[(pos + k) % n].get();
      if (!ctx.excluded(b)) return b;
    }
    return nullptr;
  }

 private:
  std::vector<core::backend_ptr> backends_;
  std::vector<std::uint32_t> table_;  // one cycle of indices into backends_
  alignas(64) std::atomic<std::size_t> next_{0};
};

}  // namespace

std::unique_ptr<policy> make_round_robin(std::span<const core::backend_ptr> ready,
                                         std::size_t max_table) {
  return std::make_unique<round_robin>(ready, std::span<const std::uint32_t>{}, max_table);
}

std::unique_ptr<policy> make_round_robin(std::span<const core::backend_ptr> ready,
                                         std::span<const std::uint32_t> weights,
                                         std::size_t max_table) {
  return std::make_unique<round_robin>(ready, weights, max_table);
}

}  // namespace sluice::balance
