#include "sluice/balance/least_conn.hpp"

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

}  // namespace

TEST_CASE("least_conn prefers the lowest (active + 1) / weight", "[policy][least_conn]") {
  auto bs = make_backends({1, 3, 2});
  bs[0]->add_active(1);  // 2/1
  bs[1]->add_active(3);  // 4/3
  bs[2]->add_active(2);  // 3/2
  auto p = balance::make_least_conn(bs);
  for (int i = 0; i < 10; ++i) CHECK(p->pick({}) == bs[1].get());

  bs[1]->add_active(1);  // 5/3 > 3/2
  for (int i = 0; i < 10; ++i) CHECK(p->pick({}) == bs[2].get());
}

TEST_CASE("least_conn with no load favours weight", "[policy][least_conn]") {
  auto bs = make_backends({1, 4});
  auto p = balance::make_least_conn(bs);
  // 1/1 against 1/4, 2/4, 3/4: the heavy one takes the first three (4/4 would tie).
  for (int i = 0; i < 3; ++i) {
    core::backend* b = p->pick({});
    CHECK(b == bs[1].get());
    b->add_active(1);
  }
}

TEST_CASE("least_conn rotates among equally loaded backends", "[policy][least_conn]") {
  auto bs = make_backends({1, 1, 1});
  auto p = balance::make_least_conn(bs);
  std::string seq;
  for (int i = 0; i < 6; ++i) {
    core::backend* b = p->pick({});
    for (std::size_t k = 0; k < bs.size(); ++k)
      if (bs[k].get() == b) seq += static_cast<char>('a' + k);
  }
  CHECK(seq == "abcabc");
}

TEST_CASE("least_conn holds requests in proportion to weight", "[policy][least_conn]") {
  auto bs = make_backends({1, 2, 3});
  auto p = balance::make_least_conn(bs);
  // Requests that never finish: the active counts end up proportional to the weights.
  for (int i = 0; i < 600; ++i) p->pick({})->add_active(1);
  CHECK(bs[0]->active() == Approx(100).margin(1));
  CHECK(bs[1]->active() == Approx(200).margin(1));
  CHECK(bs[2]->active() == Approx(300).margin(1));

  // Idle backends (every request done before the next): 1/3 < 1/2 < 1/1, so the heaviest
  // takes them all, as HAProxy's leastconn does; weights only matter once requests overlap.
  auto idle = make_backends({1, 2, 3});
  auto q = balance::make_least_conn(idle);
  std::map<core::backend*, int> count;
  for (int i = 0; i < 300; ++i) ++count[q->pick({})];
  CHECK(count[idle[2].get()] == 300);
}

TEST_CASE("least_conn skips excluded backends", "[policy][least_conn]") {
  auto bs = make_backends({1, 1, 1});
  bs[1]->add_active(5);
  auto p = balance::make_least_conn(bs);
  std::vector<core::backend*> ex{bs[0].get(), bs[2].get()};
  balance::pick_context ctx;
  ctx.exclude = ex;
  for (int i = 0; i < 10; ++i) CHECK(p->pick(ctx) == bs[1].get());

  std::vector<core::backend*> one{bs[0].get()};
  ctx.exclude = one;
  for (int i = 0; i < 10; ++i) CHECK(p->pick(ctx) == bs[2].get());

  std::vector<core::backend*> all{bs[0].get(), bs[1].get(), bs[2].get()};
  ctx.exclude = all;
  CHECK(p->pick(ctx) == nullptr);
}

TEST_CASE("least_conn over an empty set picks nothing", "[policy][least_conn]") {
  CHECK(balance::make_least_conn({})->pick({}) == nullptr);
}
