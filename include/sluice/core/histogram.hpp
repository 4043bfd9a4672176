// Fixed-bucket latency histogram of relaxed atomics: one writer thread, any number of readers.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace sluice::core {

/// Upper bounds of the latency buckets, in nanoseconds (Prometheus `le` = bound / 1e9 seconds),
/// from 100µs to 60s. A last, implicit bucket catches everything above (+Inf).
inline constexpr std::array<std::uint64_t, 18> latency_bounds_ns = {
    100'000,        250'000,        500'000,        1'000'000,      2'500'000,
    5'000'000,      10'000'000,     25'000'000,     50'000'000,     100'000'000,
    250'000'000,    500'000'000,    1'000'000'000,  2'500'000'000,  5'000'000'000,
    10'000'000'000, 30'000'000'000, 60'000'000'000};
inline constexpr std::size_t latency_bucket_count = latency_bounds_ns.size() + 1;

/// The bucket a duration falls in: the first whose bound is >= ns (Prometheus `le` is
/// inclusive), or the +Inf bucket. A linear walk: proxied requests mostly land in the first
/// few buckets, so it beats a binary search.
constexpr std::size_t latency_bucket(std::uint64_t ns) noexcept {
  std::size_t i = 0;
  while (i < latency_bounds_ns.size() && ns > latency_bounds_ns[i]) ++i;
  return i;
}

/// Single-writer increment: a plain load and store, no locked read-modify-write. Only the one
/// thread that owns the counter may call it; readers on other threads see whole values.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

/// Non-cumulative bucket counts plus the sum. Thread-safety: record() from the owning thread
/// only; readers (the scrape) may run concurrently and see each counter whole, possibly a few
/// records behind. The count is the sum of the buckets, so it always matches the +Inf bucket.
struct latency_histogram {
  std::array<std::atomic<std::uint64_t>, latency_bucket_count> buckets{};
  std::atomic<std::uint64_t> sum_ns{0};

  void record(std::chrono::nanoseconds d) noexcept {
    const std::uint64_t ns = d.count() > 0 ? static_cast<std::uint64_t>(d.count()) : 0;
    bump(buckets[latency_bucket(ns)]);
    bump(sum_ns, ns);
  }
};

/// A plain copy of one or more histograms, summed (the scrape-time merge of per-worker shards).
struct histogram_totals {
  std::array<std::uint64_t, latency_bucket_count> buckets{};
  std::uint64_t sum_ns = 0;

  void add(const latency_histogram& h) noexcept {
    for (std::size_t i = 0; i < latency_bucket_count; ++i)
      buckets[i] += h.buckets[i].load(std::memory_order_relaxed);
    sum_ns += h.sum_ns.load(std::memory_order_relaxed);
  }
  void add(const histogram_totals& h) noexcept {
    for (std::size_t i = 0; i < latency_bucket_count; ++i) buckets[i] += h.buckets[i];
    sum_ns += h.sum_ns;
  }
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (auto b : buckets) n += b;
    return n;
  }
};

}  // namespace sluice::core
