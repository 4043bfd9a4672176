#include "sluice/balance/round_robin.hpp"

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

std::string sequence(balance::policy& p, const std::vector<core::backend_ptr>& bs, int count,
                     const balance::pick_context& ctx = {}) {
  std::string out;
  for (int i = 0; i < count; ++i) {
    core::backend* b = p.pick(ctx);
    if (!b) {
      out += '-';
      continue;
    }
    for (std::size_t k = 0; k < bs.size(); ++k)
      if (bs[k].get() == b) out += static_cast<char>('a' + k);
  }
  return out;
}

}  // namespace

TEST_CASE("round_robin follows nginx's smooth weighted order", "[policy][round_robin]") {
  auto bs = make_backends({5, 1, 1});
  auto p = balance::make_round_robin(bs);
  CHECK(sequence(*p, bs, 14) == "aabacaaaabacaa");
}

TEST_CASE("round_robin with equal weights cycles in order", "[policy][round_robin]") {
  auto bs = make_backends({1, 1, 1});
  auto p = balance::make_round_robin(bs);
  CHECK(sequence(*p, bs, 7) == "abcabca");

  auto heavy = make_backends({4, 4, 4});  // reduced by the gcd: same sequence
  auto q = balance::make_round_robin(heavy);
  CHECK(sequence(*q, heavy, 6) == "abcabc");
}

TEST_CASE("round_robin interleaves 2:1 weights smoothly", "[policy][round_robin]") {
  auto bs = make_backends({2, 1});
  auto p = balance::make_round_robin(bs);
  CHECK(sequence(*p, bs, 6) == "abaaba");
}

TEST_CASE("round_robin distribution follows weights", "[policy][round_robin]") {
  auto bs = make_backends({1, 2, 3});
  auto p = balance::make_round_robin(bs);
  std::map<core::backend*, int> count;
  for (int i = 0; i < 60000; ++i) ++count[p->pick({})];
  CHECK(count[bs[0].get()] == 10000);
  CHECK(count[bs[1].get()] == 20000);
  CHECK(count[bs[2].get()] == 30000);
}

TEST_CASE("round_robin scales a long cycle down to the table cap", "[policy][round_robin]") {
  auto bs = make_backends({1000, 999, 1});
  auto p = balance::make_round_robin(bs, 200);
  std::map<core::backend*, int> count;
  for (int i = 0; i < 20000; ++i) ++count[p->pick({})];
  // Scaled to about 100:99:1 (the light backend keeps weight >= 1).
  CHECK(count[bs[0].get()] == Approx(10000).epsilon(0.03));
  CHECK(count[bs[1].get()] == Approx(9900).epsilon(0.03));
  CHECK(count[bs[2].get()] > 0);
  CHECK(count[bs[2].get()] < 400);
}

TEST_CASE("round_robin skips excluded backends", "[policy][round_robin]") {
  auto bs = make_backends({5, 1, 1});
  auto p = balance::make_round_robin(bs);

  std::vector<core::backend*> ex{bs[0].get()};
  balance::pick_context ctx;
  ctx.exclude = ex;
  std::map<core::backend*, int> count;
  for (int i = 0; i < 700; ++i) ++count[p->pick(ctx)];
  CHECK(count[bs[0].get()] == 0);
  CHECK(count[nullptr] == 0);
  CHECK(count[bs[1].get()] > 0);
  CHECK(count[bs[2].get()] > 0);

  std::vector<core::backend*> two{bs[0].get(), bs[1].get()};
  ctx.exclude = two;
  for (int i = 0; i < 20; ++i) CHECK(p->pick(ctx) == bs[2].get());

  std::vector<core::backend*> all{bs[0].get(), bs[1].get(), bs[2].get()};
  ctx.exclude = all;
  CHECK(p->pick(ctx) == nullptr);
}

TEST_CASE("round_robin finds a light backend far away in a long table", "[policy][round_robin]") {
  auto bs = make_backends({1000, 1});
  auto p = balance::make_round_robin(bs);
  std::vector<core::backend*> ex{bs[0].get()};
  balance::pick_context ctx;
  ctx.exclude = ex;
  for (int i = 0; i < 50; ++i) CHECK(p->pick(ctx) == bs[1].get());
}

TEST_CASE("round_robin over an empty set picks nothing", "[policy][round_robin]") {
  auto p = balance::make_round_robin({});
  CHECK(p->pick({}) == nullptr);
}

TEST_CASE("round_robin builds quickly over a very large set", "[policy][round_robin]") {
  std::vector<std::uint32_t> weights;
  for (int i = 0; i < 20000; ++i) weights.push_back(1 + i % 2);
  auto bs = make_backends(weights);
  auto p = balance::make_round_robin(bs);
  std::map<core::backend*, int> count;
  for (int i = 0; i < 30000; ++i) ++count[p->pick({})];  // one whole cycle
  for (int i = 0; i < 20000; ++i) CHECK(count[bs[i].get()] == 1 + i % 2);
}
