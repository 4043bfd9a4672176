#include "sluice/balance/ring_hash.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

using namespace sluice;

namespace {

std::vector<core::backend_ptr> make_backends(std::vector<std::uint32_t> weights) {
  std::vector<core::backend_ptr> out;
  for (std::size_t i = 0; i < weights.size(); ++i)
    out.push_back(std::make_shared<core::backend>(
        *core::resolve("127.0.0.1:" + std::to_string(8001 + i)), weights[i]));
  return out;
}

balance::pick_context key(int i) {
  balance::pick_context ctx;
  ctx.hash = balance::hash_key("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
  return ctx;
}

}  // namespace

TEST_CASE("ring_hash sends the same key to the same backend", "[policy][ring_hash]") {
  auto bs = make_backends({1, 1, 1, 1});
  auto p = balance::make_ring_hash(bs);
  auto q = balance::make_ring_hash(bs);  // a rebuild gives the same ring
  for (int i = 0; i < 1000; ++i) {
    core::backend* b = p->pick(key(i));
    REQUIRE(b != nullptr);
    CHECK(p->pick(key(i)) == b);
    CHECK(q->pick(key(i)) == b);
  }
}

TEST_CASE("ring_hash does not depend on the order of the ready set", "[policy][ring_hash]") {
  auto bs = make_backends({1, 2, 1});
  std::vector<core::backend_ptr> reversed(bs.rbegin(), bs.rend());
  auto p = balance::make_ring_hash(bs);
  auto q = balance::make_ring_hash(reversed);
  for (int i = 0; i < 1000; ++i) CHECK(p->pick(key(i)) == q->pick(key(i)));
}

TEST_CASE("ring_hash distribution follows weights", "[policy][ring_hash]") {
  auto bs = make_backends({1, 2, 3});
  auto p = balance::make_ring_hash(bs);
  std::map<core::backend*, int> count;
  const int n = 60000;
  for (int i = 0; i < n; ++i) ++count[p->pick(key(i))];
  // Ketama-style rings are only approximately fair (160 points per weight unit).
  CHECK(count[bs[0].get()] == Approx(n / 6).epsilon(0.2));
  CHECK(count[bs[1].get()] == Approx(n / 3).epsilon(0.2));
  CHECK(count[bs[2].get()] == Approx(n / 2).epsilon(0.2));
}

TEST_CASE("ring_hash moves only the removed backend's keys", "[policy][ring_hash]") {
  auto bs = make_backends({1, 1, 1, 1, 1});
  auto before = balance::make_ring_hash(bs);
  std::vector<core::backend_ptr> rest{bs[0], bs[1], bs[3], bs[4]};  // 127.0.0.1:8003 leaves
  auto after = balance::make_ring_hash(rest);

  const int n = 20000;
  int moved = 0, on_removed = 0;
  for (int i = 0; i < n; ++i) {
    core::backend* b0 = before->pick(key(i));
    core::backend* b1 = after->pick(key(i));
    CHECK(b1 != bs[2].get());
    if (b0 == bs[2].get())
      ++on_removed;
    else
      CHECK(b1 == b0);  // every other key stays where it was
    if (b0 != b1) ++moved;
  }
  CHECK(moved == on_removed);
  CHECK(moved == Approx(n / 5).epsilon(0.25));  // about 1/N of the keys
}

TEST_CASE("ring_hash with exclude walks to the next backend", "[policy][ring_hash]") {
  auto bs = make_backends({1, 1, 1});
  auto p = balance::make_ring_hash(bs);
  auto without = balance::make_ring_hash(std::vector<core::backend_ptr>{bs[1], bs[2]});
  for (int i = 0; i < 500; ++i) {
    std::vector<core::backend*> ex{bs[0].get()};
    balance::pick_context ctx = key(i);
    ctx.exclude = ex;
    core::backend* b = p->pick(ctx);
    CHECK(b != bs[0].get());
    CHECK(b != nullptr);
    // Walking past the excluded backend's points lands where a ring without it would.
    CHECK(b == without->pick(key(i)));
    // Stable: a retry for the same key goes to the same next backend.
    CHECK(p->pick(ctx) == b);
  }
  std::vector<core::backend*> all{bs[0].get(), bs[1].get(), bs[2].get()};
  balance::pick_context ctx = key(1);
  ctx.exclude = all;
  CHECK(p->pick(ctx) == nullptr);
}

TEST_CASE("ring_hash wraps around the end of the ring", "[policy][ring_hash]") {
  auto bs = make_backends({1, 1});
  auto p = balance::make_ring_hash(bs);
  balance::pick_context lo, hi;
  lo.hash = 0;
  hi.hash = ~std::uint64_t{0};
  CHECK(p->pick(hi) == p->pick(lo));  // past the last point is the first point
}

TEST_CASE("ring_hash caps the ring size", "[policy][ring_hash]") {
  auto bs = make_backends({1000, 1000, 1});
  auto p = balance::make_ring_hash(bs, 160, 4096);
  std::map<core::backend*, int> count;
  for (int i = 0; i < 20000; ++i) ++count[p->pick(key(i))];
  CHECK(count[nullptr] == 0);
  CHECK(count[bs[0].get()] > 5000);
  CHECK(count[bs[1].get()] > 5000);
  std::vector<core::backend*> ex{bs[0].get(), bs[1].get()};
  balance::pick_context ctx = key(3);
  ctx.exclude = ex;
  CHECK(p->pick(ctx) == bs[2].get());  // the light backend kept at least one point
}

TEST_CASE("ring_hash over an empty set picks nothing", "[policy][ring_hash]") {
  CHECK(balance::make_ring_hash({})->pick(key(1)) == nullptr);
}
