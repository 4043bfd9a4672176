#include "sluice/core/histogram.hpp"

#include <catch2/catch.hpp>

#include "sluice/core/backend.hpp"

using namespace sluice::core;
using namespace std::chrono_literals;

TEST_CASE("latency_bucket: bounds are inclusive, as Prometheus' le", "[histogram]") {
  CHECK(latency_bucket(0) == 0);
  CHECK(latency_bucket(100'000) == 0);      // exactly 100µs: first bucket
  CHECK(latency_bucket(100'001) == 1);
  CHECK(latency_bucket(1'000'000) == 3);    // 1ms
  CHECK(latency_bucket(1'000'001) == 4);
  CHECK(latency_bucket(60'000'000'000) == latency_bounds_ns.size() - 1);
  CHECK(latency_bucket(60'000'000'001) == latency_bounds_ns.size());  // +Inf
  CHECK(latency_bucket(~std::uint64_t{0}) == latency_bounds_ns.size());
  for (std::size_t i = 1; i < latency_bounds_ns.size(); ++i)
    CHECK(latency_bounds_ns[i - 1] < latency_bounds_ns[i]);
}

TEST_CASE("latency_histogram records counts and sums; negatives count as zero", "[histogram]") {
  latency_histogram h;
  h.record(50us);
  h.record(2ms);
  h.record(120s);
  h.record(-5ms);
  histogram_totals t;
  t.add(h);
  CHECK(t.count() == 4);
  CHECK(t.buckets[0] == 2);            // 50µs and the negative one
  CHECK(t.buckets[latency_bucket(2'000'000)] == 1);
  CHECK(t.buckets.back() == 1);        // 120s: +Inf
  CHECK(t.sum_ns == 50'000 + 2'000'000 + 120'000'000'000ull);
}

TEST_CASE("histogram_totals merges shards", "[histogram]") {
  latency_histogram a, b;
  a.record(1ms);
  b.record(1ms);
  b.record(3s);
  histogram_totals t;
  t.add(a);
  t.add(b);
  histogram_totals u;
  u.add(t);
  u.add(t);
  CHECK(t.count() == 3);
  CHECK(u.count() == 6);
  CHECK(u.sum_ns == 2 * (2'000'000 + 3'000'000'000ull));
}

TEST_CASE("backend per-worker blocks are made on first use and kept apart", "[backend]") {
  auto addr = resolve("127.0.0.1:8001");
  REQUIRE(addr);
  backend b(*addr, 1);
  CHECK(b.worker_stats_if(0) == nullptr);
  auto* w0 = b.worker_stats(0);
  auto* w3 = b.worker_stats(3);
  REQUIRE(w0);
  REQUIRE(w3);
  CHECK(w0 != w3);
  CHECK(b.worker_stats(0) == w0);
  CHECK(b.worker_stats_if(0) == w0);
  CHECK(b.worker_stats_if(1) == nullptr);
  CHECK(b.worker_stats(max_workers) == nullptr);
  CHECK(b.worker_stats_if(max_workers) == nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(w0) % 64 == 0);
}
