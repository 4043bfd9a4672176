#include "http/field_allocator.hpp"

#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/fields.hpp>

#include <catch2/catch.hpp>

using namespace sluice::http;
namespace asio = boost::asio;

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

namespace {
std::size_t cached_inside = 0;  // the pool's size while the frames below are alive

asio::awaitable<int> leaf(int v) {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  cached_inside = sluice::core::block_pool::cached();
  co_return v + 1;
}
asio::awaitable<void> chain(int& out) { out = co_await leaf(co_await leaf(1)); }
}  // namespace

TEST_CASE("coroutine frames come from the per-thread block pool", "[http][alloc]") {
  using sluice::core::block_pool::allocate;
  using sluice::core::block_pool::cached;
  using sluice::core::block_pool::deallocate;
  // Fill every class the frames could use, so that each frame is a pop from the lists.
  std::vector<void*> blocks;
  for (std::size_t size : {64, 128, 256, 512, 1024, 2048, 4096})
    for (int i = 0; i < 8; ++i) blocks.push_back(allocate(size));
  for (std::size_t i = 0; i < blocks.size(); ++i) deallocate(blocks[i], 64u << (i / 8));
  auto before = cached();
  REQUIRE(before >= blocks.size());

  asio::io_context io;
  int out = 0;
  asio::co_spawn(io, chain(out), asio::detached);
  io.run();
  CHECK(out == 3);
  // While chain and leaf (and the spawn's entry point) ran, their frames were off the lists;
  // once they finished, every block was back.
  CHECK(cached_inside + 3 <= before);
  CHECK(cached() == before);
}
