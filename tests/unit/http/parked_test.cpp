#include "http/worker.hpp"
#include "net/socket_rebind.hpp"

#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using sluice::http::packed_address;
using sluice::http::parked_socket;

namespace {
// A connected pair of loopback sockets.
struct pair {
  explicit pair(asio::io_context& io, const char* host = "127.0.0.1")
      : a(io), b(io) {
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address(host), 0));
    a.connect(acc.local_endpoint());
    acc.accept(b);
  }
  tcp::socket a, b;
};
}  // namespace

TEST_CASE("packed address: IPv4 and IPv6 peers, text as in X-Forwarded-For", "[http][parked]") {
  asio::io_context io;
  pair v4(io);
  auto p = packed_address::peer_of(v4.b);
  CHECK(p.family == 4);
  CHECK(p.to_string() == "127.0.0.1");

  pair v6(io, "::1");
  auto q = packed_address::peer_of(v6.b);
  CHECK(q.family == 6);
  CHECK(q.to_string() == "::1");

  packed_address a;
  a.family = 4;
  a.bytes[0] = 10;
  a.bytes[1] = 0;
  a.bytes[2] = 255;
  a.bytes[3] = 7;
  CHECK(a.to_string() == "10.0.255.7");
  CHECK(packed_address{}.to_string().empty());

  tcp::socket unconnected(io);
  CHECK(packed_address::peer_of(unconnected).family == 0);
}

TEST_CASE("rebind_socket: the connection moves between executor types intact", "[http][parked]") {
  asio::io_context io;
  pair p(io);
  int fd = p.b.native_handle();
  auto parked = sluice::net::rebind_socket<parked_socket>(std::move(p.b), io.get_executor());
  CHECK_FALSE(p.b.is_open());
  REQUIRE(parked.is_open());
  CHECK(parked.native_handle() == fd);

  // An asynchronous read on the rebound socket, through the reactor.
  char buf[5] = {};
  std::size_t got = 0;
  parked.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
    REQUIRE_FALSE(ec);
    got = n;
  });
  asio::write(p.a, asio::buffer("hello", 5));
  io.run();
  CHECK(got == 5);
  CHECK(std::string(buf, 5) == "hello");

  // And back to the default executor type (Asio's own converting move).
  tcp::socket back(std::move(parked));
  CHECK(back.native_handle() == fd);
  asio::write(back, asio::buffer("world", 5));
  char out[5];
  asio::read(p.a, asio::buffer(out));
  CHECK(std::string(out, 5) == "world");
}
