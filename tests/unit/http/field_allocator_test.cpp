#include "http/field_allocator.hpp"

#include <string>

#include <boost/beast/http/fields.hpp>

#include <catch2/catch.hpp>

using namespace sluice::http;

TEST_CASE("field pool: small blocks are recycled per size", "[http][alloc]") {
  auto before = field_pool::cached();
  void* a = field_pool::allocate(40);
  field_pool::deallocate(a, 40);
  CHECK(field_pool::cached() == before + 1);
  void* b = field_pool::allocate(64);  // same class (up to 64 bytes): the same block
  CHECK(b == a);
  void* c = field_pool::allocate(65);  // next class: another block
  CHECK(c != a);
  field_pool::deallocate(b, 64);
  field_pool::deallocate(c, 65);
  void* big = field_pool::allocate(5000);  // not pooled
  field_pool::deallocate(big, 5000);
  CHECK(field_pool::cached() == before + 2);
  void* session = field_pool::allocate(1800);  // the 2 KiB class
  field_pool::deallocate(session, 1800);
  CHECK(field_pool::cached() == before + 3);
  CHECK(field_pool::allocate(2048) == session);
  field_pool::deallocate(session, 2048);
}

TEST_CASE("field pool: the lists are bounded", "[http][alloc]") {
  std::vector<void*> blocks;
  for (std::size_t i = 0; i < field_pool::max_cached + 50; ++i)
    blocks.push_back(field_pool::allocate(300));
  for (auto* p : blocks) field_pool::deallocate(p, 300);
  CHECK(field_pool::cached() <= 4 * field_pool::max_cached);
  blocks.clear();
  auto before = field_pool::cached();
  for (std::size_t i = 0; i < field_pool::max_cached; ++i)
    blocks.push_back(field_pool::allocate(3000));
  for (auto* p : blocks) field_pool::deallocate(p, 3000);
  // Large blocks: a quarter as many kept.
  CHECK(field_pool::cached() - before <= field_pool::max_cached / 4);
}

TEST_CASE("field allocator: Beast's fields work on it", "[http][alloc]") {
  boost::beast::http::basic_fields<field_allocator<char>> f;
  f.insert("Host", "example.com");
  f.insert("X-Long", std::string(2000, 'v'));
  f.set(boost::beast::http::field::content_length, "12");
  CHECK(f["host"] == "example.com");
  CHECK(f["X-Long"].size() == 2000);
  CHECK(f[boost::beast::http::field::content_length] == "12");
  f.erase("X-Long");
  CHECK(f.count("X-Long") == 0);
}
