#include "sluice/pool/cluster.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sluice/pool/lease.hpp"

using namespace sluice;

namespace {

pool::endpoint ep(int port, std::uint32_t weight = 1) {
  return {*core::resolve("127.0.0.1:" + std::to_string(port)), weight};
}

config::cluster make_config(config::policy_kind kind = config::policy_kind::round_robin) {
  config::cluster cfg;
  cfg.name = "web";
  cfg.policy = kind;
  return cfg;
}

core::backend* find(const pool::snapshot& s, const std::string& name) {
  for (const auto& b : s.backends)
    if (b->name() == name) return b.get();
  return nullptr;
}

}  // namespace

TEST_CASE("a new cluster publishes an empty snapshot", "[pool][cluster]") {
  pool::cluster c(make_config());
  CHECK(c.name() == "web");
  auto s = c.current();
  REQUIRE(s);
  CHECK(s->version == c.version());
  CHECK(s->backends.empty());
  CHECK(s->ready.empty());
  CHECK(s->pick({}) == nullptr);
}

TEST_CASE("update keeps the backend objects of unchanged endpoints", "[pool][cluster]") {
  pool::cluster c(make_config());
  c.update({ep(8001), ep(8002), ep(8003, 2)});
  auto first = c.current();
  REQUIRE(first->backends.size() == 3);
  core::backend* kept = find(*first, "127.0.0.1:8001");
  core::backend* reweighted = find(*first, "127.0.0.1:8003");
  kept->stats().requests.fetch_add(7);

  c.update({ep(8001), ep(8003, 5), ep(8004)});  // 8002 leaves, 8003 changes weight, 8004 joins
  auto second = c.current();
  REQUIRE(second->backends.size() == 3);
  CHECK(find(*second, "127.0.0.1:8001") == kept);
  CHECK(kept->stats().requests.load() == 7);  // counters survive
  CHECK(find(*second, "127.0.0.1:8002") == nullptr);
  core::backend* b3 = find(*second, "127.0.0.1:8003");
  REQUIRE(b3);
  CHECK(b3 != reweighted);  // a weight change is a new backend
  CHECK(b3->weight() == 5);
  CHECK(find(*second, "127.0.0.1:8004") != nullptr);

  // The old snapshot is untouched and still usable by whoever holds it.
  CHECK(first->backends.size() == 3);
  CHECK(find(*first, "127.0.0.1:8002") != nullptr);
}

TEST_CASE("each update publishes a higher version", "[pool][cluster]") {
  pool::cluster c(make_config());
  const auto v0 = c.version();
  c.update({ep(8001)});
  const auto v1 = c.version();
  c.update({ep(8001)});  // same set: still a new snapshot
  const auto v2 = c.version();
  CHECK(v0 < v1);
  CHECK(v1 < v2);
  CHECK(c.current()->version == v2);
}

TEST_CASE("the snapshot's policy picks over the ready backends", "[pool][cluster]") {
  pool::cluster c(make_config());
  c.update({ep(8001), ep(8002)});
  auto s = c.current();
  REQUIRE(s->policy);
  CHECK(s->ready.size() == 2);
  core::backend* a = s->pick({});
  core::backend* b = s->pick({});
  CHECK(a != nullptr);
  CHECK(b != nullptr);
  CHECK(a != b);  // round_robin alternates

  c.update({});
  CHECK(c.current()->pick({}) == nullptr);
}

TEST_CASE("snapshot_cache refreshes only when the version moves", "[pool][cluster]") {
  pool::cluster c(make_config(config::policy_kind::least_conn));
  c.update({ep(8001)});
  pool::snapshot_cache cache(c);
  CHECK(&cache.owner() == &c);

  const pool::snapshot* s1 = &cache.get();
  CHECK(s1 == c.current().get());
  CHECK(&cache.get() == s1);  // no update: same object

  auto held = cache.hold();
  CHECK(held.get() == s1);

  c.update({ep(8001), ep(8002)});
  const pool::snapshot* s2 = &cache.get();
  CHECK(s2 != s1);
  CHECK(s2 == c.current().get());
  CHECK(s2->backends.size() == 2);
  CHECK(&cache.get() == s2);

  // The held snapshot outlives the refresh.
  CHECK(held->backends.size() == 1);
  CHECK(held->version < s2->version);
}

TEST_CASE("lease counts a request in flight", "[pool][lease]") {
  pool::cluster c(make_config());
  c.update({ep(8001)});
  auto s = c.current();
  core::backend* b = s->pick({});
  REQUIRE(b);
  CHECK(b->active() == 0);
  {
    pool::lease l(*b);
    CHECK(l);
    CHECK(l.get() == b);
    CHECK(b->active() == 1);
    pool::lease l2(*b);
    CHECK(b->active() == 2);

    pool::lease moved(std::move(l));
    CHECK_FALSE(l);
    CHECK(b->active() == 2);
    moved.release();
    CHECK(b->active() == 1);
    moved.release();  // twice is harmless
    CHECK(b->active() == 1);

    l2.report(pool::outcome::connect_failure);
    l2.report(pool::outcome::http_5xx);
    l2.report(pool::outcome::timeout);
    l2.report(pool::outcome::success);
  }
  CHECK(b->active() == 0);
  CHECK(b->stats().connect_failures.load() == 1);
  CHECK(b->stats().responses_5xx.load() == 1);
  CHECK(b->stats().failures.load() == 1);

  pool::lease empty;
  CHECK_FALSE(empty);
  empty.report(pool::outcome::reset);  // no backend: nothing to count
}

TEST_CASE("least_conn over a cluster follows leases", "[pool][lease]") {
  pool::cluster c(make_config(config::policy_kind::least_conn));
  c.update({ep(8001), ep(8002)});
  auto s = c.current();
  pool::lease first(*s->pick({}));
  // The busy backend is avoided while its lease lives.
  for (int i = 0; i < 5; ++i) CHECK(s->pick({}) != first.get());
}
