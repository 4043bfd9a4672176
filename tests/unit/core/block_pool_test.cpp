#include "sluice/core/block_pool.hpp"

#include <vector>

#include <catch2/catch.hpp>

using namespace sluice::core;

TEST_CASE("block pool: small blocks are recycled per size", "[core][alloc]") {
  auto before = block_pool::cached();
  void* a = block_pool::allocate(40);
  block_pool::deallocate(a, 40);
  CHECK(block_pool::cached() == before + 1);
  void* b = block_pool::allocate(64);  // same class (up to 64 bytes): the same block
  CHECK(b == a);
  void* c = block_pool::allocate(65);  // next class: another block
  CHECK(c != a);
  block_pool::deallocate(b, 64);
  block_pool::deallocate(c, 65);
  void* big = block_pool::allocate(5000);  // not pooled
  block_pool::deallocate(big, 5000);
  CHECK(block_pool::cached() == before + 2);
  void* session = block_pool::allocate(1800);  // the 2 KiB class
  block_pool::deallocate(session, 1800);
  CHECK(block_pool::cached() == before + 3);
  CHECK(block_pool::allocate(2048) == session);
  block_pool::deallocate(session, 2048);
}

TEST_CASE("block pool: the lists are bounded", "[core][alloc]") {
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < block_pool::max_cached + 50; ++i)
    blocks.push_back(block_pool::allocate(300));
  for (auto* p : blocks) block_pool::deallocate(p, 300);
  CHECK(block_pool::cached() <= 4 * block_pool::max_cached);
  blocks.clear();
  auto before = block_pool::cached();
  for (std::size_t i = 0; i < block_pool::max_cached; ++i)
    blocks.push_back(block_pool::allocate(3000));
  for (auto* p : blocks) block_pool::deallocate(p, 3000);
  // Large blocks: a quarter as many kept.
  CHECK(block_pool::cached() - before <= block_pool::max_cached / 4);
}
