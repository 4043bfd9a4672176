#include "net/relay_read.hpp"

#include <poll.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "loopback.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace sluice::net;
using namespace sluice::net::test;

namespace {

struct result {
  error_code ec;
  std::string data;
};

// Runs one read to completion (bounded: a read that never completes fails the test instead
// of hanging it). With `left`, reports what the read found queued behind its bytes. With
// `given_reactor` false, uses the form that finds the reactor through the socket.
result read_once(asio::io_context& io, tcp::socket& s, queued* left = nullptr,
                 bool given_reactor = true) {
  char buf[256];
  std::optional<result> r;
  auto done = [&](error_code ec, std::size_t n) { r = result{ec, std::string(buf, n)}; };
  if (given_reactor)
    async_read_relay(s, reactor_of(io), asio::buffer(buf), done, left);
  else
    async_read_relay(s, asio::buffer(buf), done, left);
  io.restart();
  for (int i = 0; i < 500 && !r; ++i) io.run_one_for(std::chrono::milliseconds(20));
  REQUIRE(r.has_value());
  return *r;
}

void send_all(int fd, const std::string& s) {
  REQUIRE(::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()));
}

}  // namespace

TEST_CASE("relay read: end-of-file consumed with the data is still reported", "[net][relay]") {
  for (bool inq : {true, false}) {
    asio::io_context io;
    listener l;
    const int peer = connect_to(l);
    auto s = accept_adopted(io, l, inq);
    send_all(peer, "ab");
    ::shutdown(peer, SHUT_WR);  // the FIN queued right behind the data
    // Let both segments arrive before the first read.
    char probe;
    for (int i = 0; i < 1000 && ::recv(s.native_handle(), &probe, 1, MSG_PEEK) != 1; ++i)
      ::usleep(1000);
    auto r1 = read_once(io, s);
    CHECK(!r1.ec);
    CHECK(r1.data == "ab");
    auto r2 = read_once(io, s);
    CHECK(r2.ec == asio::error::eof);
    ::close(peer);
  }
}

TEST_CASE("relay read: reports whether more is queued behind the bytes it returns",
          "[net][relay]") {
  for (bool inq : {true, false}) {
    for (bool fin : {true, false}) {
      INFO("TCP_INQ " << inq << ", FIN " << fin);
      asio::io_context io;
      listener l;
      const int peer = connect_to(l);
      auto s = accept_adopted(io, l, inq);
      send_all(peer, "ab");
      if (fin) ::shutdown(peer, SHUT_WR);
      // Wait until the data (and the FIN, when sent) are queued on the proxy's side.
      for (int i = 0; i < 1000; ++i) {
        pollfd p{s.native_handle(), POLLIN | POLLRDHUP, 0};
        ::poll(&p, 1, 1);
        if ((p.revents & POLLIN) && (!fin || (p.revents & POLLRDHUP))) break;
      }
      queued left = queued::unknown;
      auto r = read_once(io, s, &left);
      CHECK(r.data == "ab");
      // Only TCP_INQ can tell; without it the answer stays unknown.
      CHECK(left == (!inq ? queued::unknown : fin ? queued::more : queued::nothing));
      if (fin) CHECK(read_once(io, s).ec == asio::error::eof);
      ::close(peer);
    }
  }
}

TEST_CASE("relay read: data sent after an emptying read wakes the waiting read", "[net][relay]") {
  asio::io_context io;
  listener l;
  const int peer = connect_to(l);
  auto s = accept_adopted(io, l, true);
  send_all(peer, "a");
  auto r1 = read_once(io, s);
  CHECK(r1.data == "a");

  // The next read starts with nothing queued; the peer writes only once it is waiting.
  char buf[64];
  std::optional<result> r2;
  async_read_relay(s, reactor_of(io), asio::buffer(buf), [&](error_code ec, std::size_t n) {
    r2 = result{ec, std::string(buf, n)};
  });
  io.restart();
  io.poll();
  CHECK(!r2);
  send_all(peer, "bc");
  for (int i = 0; i < 500 && !r2; ++i) io.run_one_for(std::chrono::milliseconds(20));
  REQUIRE(r2);
  CHECK(!r2->ec);
  CHECK(r2->data == "bc");

  ::close(peer);
  CHECK(read_once(io, s).ec == asio::error::eof);
}

TEST_CASE("relay read: the reactor expects nothing to read until the socket signals again",
          "[net][relay]") {
  for (bool inq : {true, false}) {
    INFO("TCP_INQ " << inq);
    asio::io_context io;
    listener l;
    const int peer = connect_to(l);
    auto s = accept_adopted(io, l, inq);
    send_all(peer, "a");
    // The form without a reactor argument (the reactor found through the socket).
    auto r = read_once(io, s, nullptr, false);
    CHECK(r.data == "a");
    // Only TCP_INQ tells that the read emptied the socket.
    CHECK(expects_nothing_to_read(s) == inq);
    io.poll();  // no event yet: nothing changes
    CHECK(expects_nothing_to_read(s) == inq);

    // The peer closes while no read is waiting: the reactor's event is all there is to see.
    // (The guard keeps poll() running the reactor though no operation is pending, as a
    // worker's io_context does.)
    ::shutdown(peer, SHUT_WR);
    io.restart();
    auto guard = asio::make_work_guard(io);
    for (int i = 0; i < 500 && expects_nothing_to_read(s); ++i) {
      io.poll();
      ::usleep(2000);
    }
    guard.reset();
    CHECK_FALSE(expects_nothing_to_read(s));
    CHECK(read_once(io, s).ec == asio::error::eof);
    ::close(peer);
  }
}

TEST_CASE("relay read: a waiting read ends with operation_aborted on close", "[net][relay]") {
  asio::io_context io;
  listener l;
  const int peer = connect_to(l);
  auto s = accept_adopted(io, l, true);
  char buf[16];
  std::optional<error_code> got;
  async_read_relay(s, reactor_of(io), asio::buffer(buf),
                   [&](error_code ec, std::size_t) { got = ec; });
  io.poll();
  CHECK(!got);
  error_code ec;
  s.close(ec);
  io.restart();
  for (int i = 0; i < 500 && !got; ++i) io.run_one_for(std::chrono::milliseconds(20));
  REQUIRE(got);
  CHECK(*got == asio::error::operation_aborted);
  ::close(peer);
}

TEST_CASE("relay read: an unconnected socket marked empty still sees what arrives",
          "[net][relay]") {
  // The upstream side: socket(SOCK_NONBLOCK) + adopt, marked before connect(2), then a server
  // that speaks first and closes before the read is even started.
  asio::io_context io;
  listener l;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  tcp::socket up(io);
  error_code ec;
  sluice::net::adopt_nonblocking(up, tcp::v4(), fd, ec);
  REQUIRE(!ec);
  expect_nothing_to_read(up);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&l.addr), sizeof l.addr);
  REQUIRE((rc == 0 || errno == EINPROGRESS));
  const int server = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(server >= 0);
  send_all(server, "220 hello\r\n");
  ::close(server);
  io.poll();  // the reactor sees the events before any read is started

  std::string got;
  for (int i = 0; i < 20; ++i) {
    auto r = read_once(io, up);
    if (r.ec) {
      CHECK(r.ec == asio::error::eof);
      break;
    }
    got += r.data;
  }
  CHECK(got == "220 hello\r\n");
}

TEST_CASE("relay read: sockets Asio made take Asio's read", "[net][relay]") {
  asio::io_context io;
  listener l;
  const int peer = connect_to(l);
  tcp::socket s(io);
  // A plain assigned (blocking) socket: the fast path needs adopt_nonblocking's state.
  const int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(fd >= 0);
  s.assign(tcp::v4(), fd);
  send_all(peer, "xyz");
  auto r = read_once(io, s);
  CHECK(!r.ec);
  CHECK(r.data == "xyz");
  ::close(peer);
  CHECK(read_once(io, s).ec == asio::error::eof);
}
