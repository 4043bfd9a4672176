#include "sluice/balance/policy.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <thread>
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

const config::policy_kind all_kinds[] = {
    config::policy_kind::round_robin, config::policy_kind::least_conn,
    config::policy_kind::random, config::policy_kind::p2c, config::policy_kind::ring_hash};

}  // namespace

TEST_CASE("hash_key is stable and spreads short keys", "[policy][hash]") {
  // Fixed values: a ring built on another machine or another release agrees on every key.
  CHECK(balance::hash_key("") == 0xefd01f60ba992926ULL);
  CHECK(balance::hash_key("a") == 0x82a2a958a9bece5bULL);
  CHECK(balance::hash_key("10.0.0.1") == 0xc879e56ddc6c5c88ULL);
  // Keys differing in the last byte land far apart (top bits differ in about half the cases).
  int top_bit_set = 0;
  for (int i = 0; i < 256; ++i)
    if (balance::hash_key("10.0.0." + std::to_string(i)) >> 63) ++top_bit_set;
  CHECK(top_bit_set > 90);
  CHECK(top_bit_set < 166);
}

TEST_CASE("make_policy builds every kind, empty or not", "[policy]") {
  auto bs = make_backends({1, 2, 3});
  for (auto kind : all_kinds) {
    CAPTURE(static_cast<int>(kind));
    auto empty = balance::make_policy(kind, {});
    REQUIRE(empty);
    CHECK(empty->pick({}) == nullptr);

    auto p = balance::make_policy(kind, bs);
    REQUIRE(p);
    std::map<core::backend*, int> count;
    for (int i = 0; i < 600; ++i) {
      balance::pick_context ctx;
      ctx.hash = balance::hash_key(std::to_string(i));
      ++count[p->pick(ctx)];
    }
    CHECK(count[nullptr] == 0);

    std::vector<core::backend*> ex{bs[0].get(), bs[2].get()};
    balance::pick_context ctx;
    ctx.exclude = ex;
    for (int i = 0; i < 20; ++i) CHECK(p->pick(ctx) == bs[1].get());
    std::vector<core::backend*> all{bs[0].get(), bs[1].get(), bs[2].get()};
    ctx.exclude = all;
    CHECK(p->pick(ctx) == nullptr);
  }
}

TEST_CASE("weight 0 counts as 1", "[policy]") {
  auto bs = make_backends({0, 0});
  for (auto kind : all_kinds) {
    auto p = balance::make_policy(kind, bs);
    std::map<core::backend*, int> count;
    for (int i = 0; i < 200; ++i) {
      balance::pick_context ctx;
      ctx.hash = balance::hash_key(std::to_string(i));
      ++count[p->pick(ctx)];
    }
    CHECK(count[nullptr] == 0);
  }
}

TEST_CASE("pick from four threads at once", "[policy][threads]") {
  auto bs = make_backends({1, 2, 3});
  constexpr int threads = 4;
  constexpr int picks = 24000;  // whole round_robin cycles (length 6)
  for (auto kind : all_kinds) {
    CAPTURE(static_cast<int>(kind));
    auto p = balance::make_policy(kind, bs);
    std::vector<std::vector<int>> counts(threads, std::vector<int>(bs.size() + 1, 0));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < picks; ++i) {
          balance::pick_context ctx;
          ctx.hash = static_cast<std::uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
          core::backend* b = p->pick(ctx);
          std::size_t k = bs.size();  // "not found" slot
          for (std::size_t j = 0; j < bs.size(); ++j)
            if (bs[j].get() == b) k = j;
          ++counts[t][k];
          if (b) {
            b->add_active(1);
            b->add_active(-1);
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    int total = 0, missing = 0;
    for (const auto& c : counts) {
      for (std::size_t j = 0; j < bs.size(); ++j) total += c[j];
      missing += c[bs.size()];
    }
    CHECK(missing == 0);
    CHECK(total == threads * picks);
    for (const auto& b : bs) CHECK(b->active() == 0);
    if (kind == config::policy_kind::round_robin) {
      // The shared counter hands out whole cycles: exact shares even across threads.
      int per[3] = {0, 0, 0};
      for (const auto& c : counts)
        for (int j = 0; j < 3; ++j) per[j] += c[j];
      CHECK(per[0] * 6 == total);
      CHECK(per[1] * 3 == total);
      CHECK(per[2] * 2 == total);
    }
  }
}

TEST_CASE("effective weights replace the backends' weights", "[policy][weights]") {
  auto bs = make_backends({1, 1, 1});
  const std::vector<std::uint32_t> weights{6, 3, 1};
  CHECK(balance::effective_weights(bs) == std::vector<std::uint32_t>{1, 1, 1});
  CHECK(balance::effective_weights(bs, weights) == weights);
  const std::vector<std::uint32_t> zeros{0, 0, 0};
  CHECK(balance::effective_weights(bs, zeros) == std::vector<std::uint32_t>{1, 1, 1});
  const std::vector<std::uint32_t> short_list{5};
  CHECK(balance::effective_weights(bs, short_list) == std::vector<std::uint32_t>{1, 1, 1});

  for (auto kind : {config::policy_kind::round_robin, config::policy_kind::random,
                    config::policy_kind::p2c, config::policy_kind::ring_hash}) {
    CAPTURE(static_cast<int>(kind));
    balance::seed_thread_random(42);
    auto p = balance::make_policy(kind, bs, weights);
    std::map<core::backend*, int> count;
    constexpr int n = 10000;
    for (int i = 0; i < n; ++i) {
      balance::pick_context ctx;
      ctx.hash = balance::hash_key(std::to_string(i));
      ++count[p->pick(ctx)];
    }
    if (kind == config::policy_kind::round_robin) {  // exact over whole cycles
      CHECK(count[bs[0].get()] == 6000);
      CHECK(count[bs[1].get()] == 3000);
      CHECK(count[bs[2].get()] == 1000);
    } else {  // within a few percent
      CHECK(count[bs[0].get()] == Approx(6000).epsilon(0.08));
      CHECK(count[bs[1].get()] == Approx(3000).epsilon(0.12));
      CHECK(count[bs[2].get()] == Approx(1000).epsilon(0.25));
    }
  }
}

TEST_CASE("least_conn divides load by the effective weight", "[policy][weights]") {
  auto bs = make_backends({1, 1});
  const std::vector<std::uint32_t> weights{1, 4};
  auto p = balance::make_policy(config::policy_kind::least_conn, bs, weights);
  // Hold every pick: the load settles at active proportional to weight (1 : 4).
  std::vector<core::backend*> held;
  for (int i = 0; i < 50; ++i) {
    core::backend* b = p->pick({});
    b->add_active(1);
    held.push_back(b);
  }
  CHECK(bs[0]->active() >= 9);  // ties go round, so one either way
  CHECK(bs[0]->active() <= 11);
  CHECK(bs[0]->active() + bs[1]->active() == 50);
  for (auto* b : held) b->add_active(-1);
}
