#include "sluice/balance/p2c.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "sluice/balance/random.hpp"

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

TEST_CASE("p2c never picks the most loaded of three when the others are idle", "[policy][p2c]") {
  balance::seed_thread_random(1);
  auto bs = make_backends({1, 1, 1});
  bs[1]->add_active(10);
  auto p = balance::make_p2c(bs);
  std::map<core::backend*, int> count;
  for (int i = 0; i < 10000; ++i) ++count[p->pick({})];
  CHECK(count[bs[1].get()] == 0);
  // The idle two: picked when drawn together (first wins) or against the loaded one.
  CHECK(count[bs[0].get()] == Approx(5000).epsilon(0.05));
  CHECK(count[bs[2].get()] == Approx(5000).epsilon(0.05));
}

TEST_CASE("p2c distribution over idle backends follows weights", "[policy][p2c]") {
  balance::seed_thread_random(2);
  auto bs = make_backends({1, 2, 3});
  auto p = balance::make_p2c(bs);
  std::map<core::backend*, int> count;
  const int n = 120000;
  for (int i = 0; i < n; ++i) ++count[p->pick({})];
  // Idle: every pair ties at 0 / weight and the first draw wins, so shares follow weights.
  CHECK(count[nullptr] == 0);
  CHECK(count[bs[0].get()] == Approx(n / 6).epsilon(0.03));
  CHECK(count[bs[1].get()] == Approx(n / 3).epsilon(0.03));
  CHECK(count[bs[2].get()] == Approx(n / 2).epsilon(0.03));
}

TEST_CASE("p2c keeps active counts proportional to weight", "[policy][p2c]") {
  balance::seed_thread_random(3);
  auto bs = make_backends({1, 2, 3});
  auto p = balance::make_p2c(bs);
  for (int i = 0; i < 6000; ++i) p->pick({})->add_active(1);
  CHECK(bs[0]->active() == Approx(1000).epsilon(0.1));
  CHECK(bs[1]->active() == Approx(2000).epsilon(0.1));
  CHECK(bs[2]->active() == Approx(3000).epsilon(0.1));
}

TEST_CASE("p2c skips excluded backends", "[policy][p2c]") {
  balance::seed_thread_random(4);
  auto bs = make_backends({1, 1, 1});
  auto p = balance::make_p2c(bs);
  balance::pick_context ctx;

  std::vector<core::backend*> one{bs[0].get()};
  ctx.exclude = one;
  std::map<core::backend*, int> count;
  for (int i = 0; i < 2000; ++i) ++count[p->pick(ctx)];
  CHECK(count[bs[0].get()] == 0);
  CHECK(count[nullptr] == 0);

  std::vector<core::backend*> two{bs[0].get(), bs[2].get()};
  ctx.exclude = two;
  for (int i = 0; i < 50; ++i) CHECK(p->pick(ctx) == bs[1].get());

  std::vector<core::backend*> all{bs[0].get(), bs[1].get(), bs[2].get()};
  ctx.exclude = all;
  CHECK(p->pick(ctx) == nullptr);

  auto single = make_backends({1});
  auto q = balance::make_p2c(single);
  CHECK(q->pick({}) == single[0].get());
  std::vector<core::backend*> s{single[0].get()};
  ctx.exclude = s;
  CHECK(q->pick(ctx) == nullptr);
}

TEST_CASE("p2c over an empty set picks nothing", "[policy][p2c]") {
  CHECK(balance::make_p2c({})->pick({}) == nullptr);
}
