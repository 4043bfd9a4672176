#include "sluice/metrics/worker_shard.hpp"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace std::chrono_literals;

TEST_CASE("status_class", "[metrics]") {
  CHECK(metrics::status_class(100) == 0);
  CHECK(metrics::status_class(200) == 1);
  CHECK(metrics::status_class(304) == 2);
  CHECK(metrics::status_class(499) == 3);
  CHECK(metrics::status_class(503) == 4);
  CHECK(metrics::status_class(599) == 4);
  CHECK(metrics::status_class(0) == -1);
  CHECK(metrics::status_class(99) == -1);
  CHECK(metrics::status_class(600) == -1);
}

TEST_CASE("worker_shard counts per listener, cluster and backend", "[metrics]") {
  metrics::worker_shard s(2, 2, 1, true);
  auto b = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 1);
  s.on_connection_open(1);
  s.on_connection_open(1);
  s.on_connection_close(1);
  s.on_request(1, 0, b.get(), 200, 3ms, 2ms, 100, 1000);
  s.on_request(1, 0, b.get(), 502, 1s, 0ns, 10, 20);
  s.on_request(0, -1, nullptr, 404, 1ms, 0ns, 5, 6);
  s.on_request(1, 0, nullptr, 0, 1ms, 0ns, 1, 0);  // no response sent
  s.on_connect_failure(0);
  s.on_retry(0);
  s.on_retry(0);

  const auto& l1 = s.listener(1);
  CHECK(l1.accepted.load() == 2);
  CHECK(l1.closed.load() == 1);
  CHECK(l1.responses[1].load() == 1);
  CHECK(l1.responses[4].load() == 1);
  CHECK(l1.bytes_in.load() == 111);
  CHECK(l1.bytes_out.load() == 1020);
  CHECK(s.listener(0).responses[3].load() == 1);

  const auto& c = s.cluster(0);
  CHECK(c.responses[1].load() == 1);
  CHECK(c.responses[4].load() == 1);
  CHECK(c.connect_failures.load() == 1);
  CHECK(c.retries.load() == 2);
  core::histogram_totals req, up;
  req.add(c.request);
  up.add(c.upstream);
  CHECK(req.count() == 3);  // the request without a response is still timed
  CHECK(up.count() == 1);   // only the one with an upstream exchange
  CHECK(up.sum_ns == 2'000'000);

  const auto* w = b->worker_stats_if(2);
  REQUIRE(w);
  CHECK(w->responses[1].load() == 1);
  CHECK(w->responses[4].load() == 1);
  CHECK(b->worker_stats_if(0) == nullptr);
}

TEST_CASE("worker_shard ignores out-of-range indices", "[metrics]") {
  metrics::worker_shard s(0, 1, 1, true);
  s.on_connection_open(7);
  s.on_connection_close(7);
  s.on_request(9, 9, nullptr, 200, 1ms, 1ms, 1, 1);
  s.on_request(0, -5, nullptr, 200, 1ms, 1ms, 1, 1);
  s.on_connect_failure(3);
  s.on_connect_failure(-1);
  s.on_retry(3);
  CHECK(s.listener(0).responses[1].load() == 1);
  CHECK(s.cluster(0).responses[1].load() == 0);
}

TEST_CASE("a disabled worker_shard counts nothing", "[metrics]") {
  metrics::worker_shard s(0, 1, 1, false);
  auto b = std::make_shared<core::backend>(*core::resolve("127.0.0.1:8001"), 1);
  s.on_connection_open(0);
  s.on_request(0, 0, b.get(), 200, 1ms, 1ms, 1, 1);
  s.on_retry(0);
  CHECK(s.listener(0).accepted.load() == 0);
  CHECK(s.cluster(0).responses[1].load() == 0);
  CHECK(b->worker_stats_if(0) == nullptr);
}

TEST_CASE("worker_shard counts relayed bytes outside requests", "[metrics]") {
  metrics::worker_shard s(0, 2, 1, true);
  s.on_received(1, 10);
  s.on_received(1, 5);
  s.on_sent(1, 7);
  s.on_sent(9, 7);  // out of range: ignored
  CHECK(s.listener(1).bytes_in.load() == 15);
  CHECK(s.listener(1).bytes_out.load() == 7);
  CHECK(s.listener(1).responses[1].load() == 0);
  metrics::worker_shard off(0, 2, 1, false);
  off.on_received(1, 10);
  off.on_sent(1, 10);
  CHECK(off.listener(1).bytes_in.load() == 0);
  CHECK(off.listener(1).bytes_out.load() == 0);
}

TEST_CASE("slot_array: stable addresses, capped size", "[metrics][slots]") {
  using arr = metrics::slot_array<metrics::route_counters>;
  arr a(3);
  CHECK(a.size() == 3);
  auto* first = a.find(0);
  REQUIRE(first);
  CHECK(a.find(3) == nullptr);
  CHECK(a.find(metrics::no_slot) == nullptr);
  a.grow(2);  // never shrinks
  CHECK(a.size() == 3);
  a.grow(100);
  CHECK(a.size() == 100);
  CHECK(a.find(0) == first);
  CHECK(a.find(99) == &a[99]);
  CHECK(a.find(17) + 1 == a.find(18));  // within a chunk: contiguous
  a.grow(arr::max_slots + 5);
  CHECK(a.size() == arr::max_slots);
  CHECK(a.find(arr::max_slots - 1));
  CHECK_FALSE(a.find(arr::max_slots));
  CHECK(a.find(0) == first);
}

TEST_CASE("worker_shard counts per route and grows", "[metrics][slots]") {
  metrics::worker_shard s(0, 1, 1, true);
  CHECK(s.routes() == 0);
  s.on_request(0, 0, nullptr, 200, 1ms, 0ns, 0, 0, 0);  // no route slot yet: ignored
  s.grow(1, 1, 2);
  s.on_request(0, 0, nullptr, 200, 1ms, 0ns, 0, 0, 1);
  s.on_request(0, 0, nullptr, 0, 1ms, 0ns, 0, 0, 1);
  CHECK(s.route(0).responses[1].load() == 0);
  CHECK(s.route(1).responses[1].load() == 1);
  core::histogram_totals t;
  t.add(s.route(1).request);
  CHECK(t.count() == 2);
  CHECK(s.listener(0).responses[1].load() == 2);

  metrics::worker_shard off(0, 1, 1, false, 1);
  off.on_request(0, 0, nullptr, 200, 1ms, 0ns, 0, 0, 0);
  CHECK(off.route(0).responses[1].load() == 0);
}
