#include "sluice/pool/cluster.hpp"

#include <catch2/catch.hpp>

#include <map>
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

// ---- health: ready set, panic, draining, slow start, passive feed ------------------------

namespace {

std::vector<std::string> ready_names(const pool::snapshot& s) {
  std::vector<std::string> out;
  for (const auto& b : s.ready) out.push_back(b->name());
  return out;
}

const std::string a8001 = "127.0.0.1:8001", a8002 = "127.0.0.1:8002", a8003 = "127.0.0.1:8003";

}  // namespace

TEST_CASE("unhealthy and ejected backends leave the ready set", "[pool][cluster][health]") {
  pool::cluster c(make_config());
  c.update({ep(8001), ep(8002), ep(8003)});
  auto s = c.current();
  CHECK(ready_names(*s) == std::vector<std::string>{a8001, a8002, a8003});
  CHECK_FALSE(s->panic);
  for (const auto& b : s->backends) {
    CHECK(b->state() == core::health_state::healthy);
    CHECK(b->health().in_service.load());
  }

  find(*s, a8002)->health().checked_healthy.store(false);
  find(*s, a8003)->health().ejected.store(true);
  c.refresh();
  auto t = c.current();
  CHECK(t->version > s->version);
  CHECK(ready_names(*t) == std::vector<std::string>{a8001});
  CHECK(t->backends.size() == 3);  // still known
  CHECK(find(*t, a8002)->state() == core::health_state::unhealthy);
  CHECK(find(*t, a8003)->state() == core::health_state::ejected);
  CHECK_FALSE(find(*t, a8002)->health().in_service.load());
  for (int i = 0; i < 10; ++i) CHECK(t->pick({})->name() == a8001);
}

TEST_CASE("panic fail publishes an empty ready set, spread uses every backend", "[pool][cluster][health]") {
  for (auto mode : {config::panic_mode::fail, config::panic_mode::spread}) {
    auto cfg = make_config();
    cfg.panic = mode;
    pool::cluster c(cfg);
    c.update({ep(8001), ep(8002)});
    for (const auto& b : c.current()->backends) b->health().checked_healthy.store(false);
    c.refresh();
    auto s = c.current();
    CHECK(s->panic);
    if (mode == config::panic_mode::fail) {
      CHECK(s->ready.empty());
      CHECK(s->pick({}) == nullptr);
    } else {
      CHECK(ready_names(*s) == std::vector<std::string>{a8001, a8002});
      CHECK(s->pick({}) != nullptr);
    }
    // One comes back: panic is over, only it is ready.
    find(*s, a8002)->health().checked_healthy.store(true);
    c.refresh();
    CHECK_FALSE(c.current()->panic);
    CHECK(ready_names(*c.current()) == std::vector<std::string>{a8002});
  }
  pool::cluster empty(make_config());
  CHECK_FALSE(empty.current()->panic);  // no backends at all is not panic
}

TEST_CASE("panic spread leaves drained backends out", "[pool][cluster][health]") {
  auto cfg = make_config();
  cfg.panic = config::panic_mode::spread;
  pool::cluster c(cfg);
  c.update({ep(8001), ep(8002)});
  CHECK(c.set_draining(a8001, true));
  find(*c.current(), a8002)->health().checked_healthy.store(false);
  c.refresh();
  CHECK(c.current()->panic);
  CHECK(ready_names(*c.current()) == std::vector<std::string>{a8002});
}

TEST_CASE("set_draining takes a backend out while its leases finish", "[pool][cluster][health]") {
  pool::cluster c(make_config());
  c.update({ep(8001), ep(8002)});
  auto before = c.current();
  core::backend* b1 = find(*before, a8001);
  pool::lease in_flight(*b1);

  CHECK_FALSE(c.set_draining("127.0.0.1:9999", true));  // unknown
  CHECK(c.current() == before);                         // nothing published

  CHECK(c.set_draining(a8001, true));
  auto s = c.current();
  CHECK(s->version > before->version);
  CHECK(ready_names(*s) == std::vector<std::string>{a8002});
  CHECK(b1->state() == core::health_state::draining);
  CHECK(b1->active() == 1);  // the request in flight goes on
  in_flight.report(pool::outcome::success);
  in_flight.release();
  CHECK(b1->active() == 0);

  const auto v = c.version();
  CHECK(c.set_draining(a8001, true));  // already draining: known, nothing to publish
  CHECK(c.version() == v);

  // Draining survives a membership update that keeps the backend.
  c.update({ep(8001), ep(8002), ep(8003)});
  CHECK(find(*c.current(), a8001) == b1);
  CHECK(ready_names(*c.current()) == std::vector<std::string>{a8002, a8003});

  CHECK(c.set_draining(a8001, false));
  CHECK(ready_names(*c.current()) == std::vector<std::string>{a8001, a8002, a8003});
}

TEST_CASE("health survives updates, and a weight change carries it over", "[pool][cluster][health]") {
  pool::cluster c(make_config());
  c.update({ep(8001), ep(8002)});
  core::backend* b2 = find(*c.current(), a8002);
  b2->health().checked_healthy.store(false);
  b2->health().ejections.store(4);
  c.refresh();
  c.update({ep(8001), ep(8002)});
  CHECK(find(*c.current(), a8002) == b2);
  CHECK(ready_names(*c.current()) == std::vector<std::string>{a8001});

  c.update({ep(8001), ep(8002, 3)});  // new object, same health
  core::backend* nb2 = find(*c.current(), a8002);
  CHECK(nb2 != b2);
  CHECK(nb2->weight() == 3);
  CHECK(nb2->state() == core::health_state::unhealthy);
  CHECK(nb2->health().ejections.load() == 4);
  CHECK(ready_names(*c.current()) == std::vector<std::string>{a8001});
}

TEST_CASE("membership watchers run after every update", "[pool][cluster]") {
  pool::cluster c(make_config());
  int calls = 0;
  std::size_t seen = 0;
  auto id = c.watch([&] {
    ++calls;
    seen = c.current()->backends.size();
  });
  c.update({ep(8001), ep(8002)});
  CHECK(calls == 1);
  CHECK(seen == 2);
  c.refresh();  // not a membership change
  c.set_draining(a8001, true);
  CHECK(calls == 1);
  c.unwatch(id);
  c.update({ep(8001)});
  CHECK(calls == 1);
}

namespace {

// Picks `n` times and counts per backend name.
std::map<std::string, int> spread(const pool::snapshot& s, int n) {
  std::map<std::string, int> out;
  for (int i = 0; i < n; ++i) ++out[s.pick({})->name()];
  return out;
}

}  // namespace

TEST_CASE("slow start ramps a recovering backend's weight in steps", "[pool][cluster][slow_start]") {
  auto cfg = make_config();
  cfg.slow_start = std::chrono::seconds(10);
  pool::cluster c(cfg);
  const auto t0 = pool::cluster::clock::now();
  c.update({ep(8001), ep(8002)}, t0);
  CHECK_FALSE(c.ramping());  // the first membership takes full weight at once
  CHECK(c.current()->weights.empty());

  core::backend* b2 = find(*c.current(), a8002);
  b2->health().checked_healthy.store(false);
  c.refresh(t0 + std::chrono::seconds(1));
  CHECK(ready_names(*c.current()) == std::vector<std::string>{a8001});

  b2->health().checked_healthy.store(true);
  c.refresh(t0 + std::chrono::seconds(2));  // back: ramp starts here
  CHECK(c.ramping());
  auto s = c.current();
  REQUIRE(s->weights.size() == 2);
  CHECK(s->weights[0] == 10);  // full weight 1, scaled
  CHECK(s->weights[1] == 1);   // just started
  auto counts = spread(*s, 110);
  CHECK(counts[a8001] == 100);
  CHECK(counts[a8002] == 10);

  c.refresh(t0 + std::chrono::seconds(7));  // half way
  s = c.current();
  CHECK(s->weights == std::vector<std::uint32_t>{10, 5});
  counts = spread(*s, 150);
  CHECK(counts[a8001] == 100);
  CHECK(counts[a8002] == 50);

  c.refresh(t0 + std::chrono::seconds(12));  // window over
  CHECK_FALSE(c.ramping());
  CHECK(c.current()->weights.empty());
  counts = spread(*c.current(), 100);
  CHECK(counts[a8001] == 50);
  CHECK(counts[a8002] == 50);
}

TEST_CASE("slow start for a backend that joins a serving cluster", "[pool][cluster][slow_start]") {
  auto cfg = make_config(config::policy_kind::least_conn);
  cfg.slow_start = std::chrono::seconds(10);
  pool::cluster c(cfg);
  const auto t0 = pool::cluster::clock::now();
  c.update({ep(8001)}, t0);
  c.update({ep(8001), ep(8002, 2)}, t0 + std::chrono::seconds(1));
  CHECK(c.ramping());
  CHECK(c.current()->weights == std::vector<std::uint32_t>{10, 1});
  c.refresh(t0 + std::chrono::seconds(6));
  CHECK(c.current()->weights == std::vector<std::uint32_t>{10, 10});
  // Draining ends a ramp; undraining starts a new one.
  c.set_draining(a8002, true);
  CHECK_FALSE(c.ramping());
  c.set_draining(a8002, false);
  CHECK(c.ramping());
}

TEST_CASE("no slow start when nothing else serves", "[pool][cluster][slow_start]") {
  auto cfg = make_config();
  cfg.slow_start = std::chrono::seconds(10);
  pool::cluster c(cfg);
  c.update({ep(8001)});
  core::backend* b = find(*c.current(), a8001);
  b->health().checked_healthy.store(false);
  c.refresh();
  b->health().checked_healthy.store(true);
  c.refresh();
  CHECK_FALSE(c.ramping());
}

TEST_CASE("lease failures feed the passive streak and reach the handler", "[pool][lease][health]") {
  auto cfg = make_config();
  cfg.outlier.enabled = true;
  cfg.outlier.consecutive = 3;
  cfg.outlier.count_mask = core::outcome_bit(core::outcome::connect_failure) |
                           core::outcome_bit(core::outcome::reset);
  pool::cluster c(cfg);
  c.update({ep(8001)});
  auto s = c.current();
  core::backend* b = s->backends.front().get();
  std::vector<core::backend_ptr> handed;
  c.on_failure_streak([&](core::backend_ptr p) { handed.push_back(std::move(p)); });

  auto report = [&](pool::outcome o) {
    pool::lease l(*b);
    l.report(o);
  };
  report(pool::outcome::connect_failure);
  report(pool::outcome::reset);
  report(pool::outcome::http_5xx);  // not counted: no effect on the streak
  CHECK(b->health().consecutive_failures.load() == 2);
  report(pool::outcome::success);  // resets
  CHECK(b->health().consecutive_failures.load() == 0);
  for (int i = 0; i < 3; ++i) report(pool::outcome::connect_failure);
  REQUIRE(handed.size() == 1);
  CHECK(handed[0].get() == b);
  for (int i = 0; i < 2; ++i) report(pool::outcome::connect_failure);
  CHECK(handed.size() == 1);
  report(pool::outcome::connect_failure);  // the next multiple: handed over again
  CHECK(handed.size() == 2);
  CHECK(b->stats().connect_failures.load() == 7);

  c.on_failure_streak({});
  for (int i = 0; i < 6; ++i) report(pool::outcome::connect_failure);
  CHECK(handed.size() == 2);
}

TEST_CASE("without outlier, failures are only counted", "[pool][lease][health]") {
  pool::cluster c(make_config());
  c.update({ep(8001)});
  int calls = 0;
  c.on_failure_streak([&](core::backend_ptr) { ++calls; });
  core::backend* b = c.current()->backends.front().get();
  for (int i = 0; i < 20; ++i) pool::lease(*b).report(pool::outcome::connect_failure);
  CHECK(calls == 0);
  CHECK(b->health().consecutive_failures.load() == 0);
  CHECK(b->stats().connect_failures.load() == 20);
}
