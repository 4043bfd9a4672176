#include "sluice/balance/random.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <set>
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

}  // namespace

TEST_CASE("random distribution follows weights", "[policy][random]") {
  balance::seed_thread_random(42);
  auto bs = make_backends({1, 2, 3});
  auto p = balance::make_random(bs);
  std::map<core::backend*, int> count;
  const int n = 120000;
  for (int i = 0; i < n; ++i) ++count[p->pick({})];
  CHECK(count[bs[0].get()] == Approx(n / 6).epsilon(0.03));
  CHECK(count[bs[1].get()] == Approx(n / 3).epsilon(0.03));
  CHECK(count[bs[2].get()] == Approx(n / 2).epsilon(0.03));
}

TEST_CASE("weighted_index maps the weight ranges exactly", "[policy][random]") {
  auto bs = make_backends({1, 2, 1});
  balance::weighted_index idx(bs);
  REQUIRE(idx.size() == 3);
  // Quarter of the 64-bit range per unit of weight.
  const std::uint64_t q = std::uint64_t{1} << 62;
  CHECK(idx.draw(0) == 0);
  CHECK(idx.draw(q - 1) == 0);
  CHECK(idx.draw(q) == 1);
  CHECK(idx.draw(3 * q - 1) == 1);
  CHECK(idx.draw(3 * q) == 2);
  CHECK(idx.draw(~std::uint64_t{0}) == 2);
  // Without the middle one, halves go to the ends.
  CHECK(idx.draw_other(0, 1) == 0);
  CHECK(idx.draw_other((q << 1) - 1, 1) == 0);
  CHECK(idx.draw_other(q << 1, 1) == 2);
  for (std::uint64_t r : {std::uint64_t{0}, q, 2 * q, 3 * q, ~std::uint64_t{0}})
    CHECK(idx.draw_other(r, 0) != 0);
}

TEST_CASE("thread_random is reproducible after seeding", "[policy][random]") {
  balance::seed_thread_random(7);
  std::vector<std::uint64_t> a, b;
  for (int i = 0; i < 5; ++i) a.push_back(balance::thread_random());
  balance::seed_thread_random(7);
  for (int i = 0; i < 5; ++i) b.push_back(balance::thread_random());
  CHECK(a == b);
  CHECK(std::set<std::uint64_t>(a.begin(), a.end()).size() == 5);
}

TEST_CASE("random skips excluded backends", "[policy][random]") {
  auto bs = make_backends({100, 1, 1});
  auto p = balance::make_random(bs);
  std::vector<core::backend*> ex{bs[0].get()};
  balance::pick_context ctx;
  ctx.exclude = ex;
  std::map<core::backend*, int> count;
  for (int i = 0; i < 2000; ++i) ++count[p->pick(ctx)];
  CHECK(count[bs[0].get()] == 0);
  CHECK(count[nullptr] == 0);
  CHECK(count[bs[1].get()] > 0);
  CHECK(count[bs[2].get()] > 0);

  std::vector<core::backend*> all{bs[0].get(), bs[1].get(), bs[2].get()};
  ctx.exclude = all;
  CHECK(p->pick(ctx) == nullptr);
}

TEST_CASE("random over an empty set picks nothing", "[policy][random]") {
  CHECK(balance::make_random({})->pick({}) == nullptr);
}
