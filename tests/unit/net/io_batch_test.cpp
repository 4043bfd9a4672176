#include "net/io_batch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include "loopback.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace sluice::net;
using namespace sluice::net::test;

namespace {

// A connection: `peer` is the test's blocking end, `s` the proxy's end, adopted the way the
// runtime adopts accepted sockets.
struct connection {
  int peer = -1;
  tcp::socket s;
  connection(asio::io_context& io, const listener& l, bool inq = false)
      : peer(connect_to(l)), s(accept_adopted(io, l, inq)) {}
  ~connection() {
    if (peer >= 0) ::close(peer);
  }
  // What the peer can read now, without waiting.
  std::string read_now() const {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(peer, buf, sizeof buf, MSG_DONTWAIT)) > 0) out.append(buf, n);
    return out;
  }
  // Reads exactly `n` bytes (bounded: a peer that gets less fails the test).
  std::string read_exactly(std::size_t n) const {
    timeval tv{10, 0};
    ::setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out(n, '\0');
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::recv(peer, out.data() + got, n - got, 0);
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return out;
  }
};

struct result {
  error_code ec;
  std::size_t n = 0;
};

// Runs `io` until every result is in (bounded).
template <std::size_t N>
void run_until(asio::io_context& io, std::array<std::optional<result>, N>& results) {
  io.restart();
  auto all = [&] {
    for (auto& r : results)
      if (!r) return false;
    return true;
  };
  for (int i = 0; i < 1000 && !all(); ++i) io.run_one_for(std::chrono::milliseconds(20));
  for (auto& r : results) REQUIRE(r.has_value());
}

// io_uring may be switched off for the whole machine (kernel.io_uring_disabled = 2), or for
// unprivileged processes (1); then nothing is batched, and the tests say so instead.
bool uring_allowed() {
  std::ifstream f("/proc/sys/kernel/io_uring_disabled");
  int v = 0;
  if (f >> v) return v == 0 || (v == 1 && ::geteuid() == 0);
  return true;
}

}  // namespace

TEST_CASE("batched send: sends wait for the turn's flush, then all go out", "[net][send]") {
  if (!uring_allowed()) {
    WARN("io_uring is disabled on this machine: sends are not batched");
    return;
  }
  asio::io_context io;
  listener l;
  connection a(io, l), b(io, l);
  REQUIRE(sends_batched(a.s));
  const std::string head = "HTTP/1.1 200 OK\r\n", body = "hello";
  std::array<std::optional<result>, 2> r;
  // Several buffers, an empty one among them, are one gathered send.
  std::array<asio::const_buffer, 3> bufs{asio::buffer(head), asio::const_buffer(),
                                         asio::buffer(body)};
  async_write_batched(a.s, bufs, [&](error_code ec, std::size_t n) { r[0] = result{ec, n}; });
  async_write_batched(b.s, asio::buffer(body), [&](error_code ec, std::size_t n) {
    r[1] = result{ec, n};
  });
  // Queued, not sent: nothing has reached the peers before the loop runs.
  CHECK(a.read_now().empty());
  CHECK(b.read_now().empty());
  run_until(io, r);
  CHECK(!r[0]->ec);
  CHECK(r[0]->n == head.size() + body.size());
  CHECK(!r[1]->ec);
  CHECK(r[1]->n == body.size());
  CHECK(a.read_exactly(head.size() + body.size()) == head + body);
  CHECK(b.read_exactly(body.size()) == body);
}

TEST_CASE("batched send: what the socket cannot take at once follows on Asio's reactor",
          "[net][send]") {
  asio::io_context io;
  listener l;
  connection c(io, l);
  int small = 16 * 1024;
  ::setsockopt(c.s.native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(c.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  // Far more than the socket buffers hold: the first send is partial (or would block).
  std::string data(8 * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 23);
  std::array<std::optional<result>, 1> r;
  async_write_batched(c.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    r[0] = result{ec, n};
  });
  std::string got;
  std::thread reader([&] { got = c.read_exactly(data.size()); });
  run_until(io, r);
  reader.join();
  CHECK(!r[0]->ec);
  CHECK(r[0]->n == data.size());
  CHECK(got == data);
}

TEST_CASE("batched send: a socket closed before the flush sends nothing and says so",
          "[net][send]") {
  if (!uring_allowed()) return;
  asio::io_context io;
  listener l;
  connection c(io, l);
  std::array<std::optional<result>, 1> r;
  const std::string data = "never sent";
  async_write_batched(c.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    r[0] = result{ec, n};
  });
  c.s.close();
  // The fd number is taken again at once: the queued send must not go to the new socket.
  connection other(io, l);
  run_until(io, r);
  CHECK(r[0]->ec == asio::error::operation_aborted);  // as for an operation pending at close
  CHECK(r[0]->n == 0);
  CHECK(other.read_now().empty());
  CHECK(c.read_exactly(1).empty());  // end-of-file, no byte
}

TEST_CASE("batched send: cancel_io aborts a send still queued, and only that one", "[net][send]") {
  if (!uring_allowed()) return;
  asio::io_context io;
  listener l;
  connection a(io, l), b(io, l);
  std::array<std::optional<result>, 2> r;
  const std::string data = "payload";
  async_write_batched(a.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    r[0] = result{ec, n};
  });
  async_write_batched(b.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    r[1] = result{ec, n};
  });
  error_code ec;
  cancel_io(a.s, ec);
  CHECK(!ec);
  run_until(io, r);
  CHECK(r[0]->ec == asio::error::operation_aborted);
  CHECK(r[0]->n == 0);
  CHECK(!r[1]->ec);
  CHECK(b.read_exactly(data.size()) == data);
  // The socket itself is still usable: a later send goes out.
  std::array<std::optional<result>, 1> again;
  async_write_batched(a.s, asio::buffer(data), [&](error_code ec2, std::size_t n) {
    again[0] = result{ec2, n};
  });
  run_until(io, again);
  CHECK(!again[0]->ec);
  CHECK(a.read_exactly(data.size()) == data);
}

TEST_CASE("batched send: a reset peer is an error", "[net][send]") {
  asio::io_context io;
  listener l;
  connection c(io, l);
  linger lg{1, 0};
  ::setsockopt(c.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(c.peer);  // RST
  c.peer = -1;
  // Let the reset arrive before the send.
  for (int i = 0; i < 1000; ++i) {
    char probe;
    if (::recv(c.s.native_handle(), &probe, 1, MSG_DONTWAIT | MSG_PEEK) == -1 && errno != EAGAIN)
      break;
    ::usleep(1000);
  }
  std::array<std::optional<result>, 1> r;
  const std::string data = "to nobody";
  async_write_batched(c.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    r[0] = result{ec, n};
  });
  run_until(io, r);
  CHECK(r[0]->ec);
  CHECK(r[0]->n == 0);
}

TEST_CASE("batched send: SLUICE_IO_URING_SEND=0 sends without the ring", "[net][send]") {
  ::setenv("SLUICE_IO_URING_SEND", "0", 1);
  asio::io_context io;
  listener l;
  connection c(io, l);
  const bool batched = sends_batched(c.s);  // the batcher reads the variable when made
  ::unsetenv("SLUICE_IO_URING_SEND");
  CHECK_FALSE(batched);
  std::array<std::optional<result>, 1> r;
  const std::string data = "direct";
  async_write_batched(c.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    r[0] = result{ec, n};
  });
  run_until(io, r);
  CHECK(!r[0]->ec);
  CHECK(c.read_exactly(data.size()) == data);
}

TEST_CASE("batched send: an io_context destroyed before its flush frees the queued sends",
          "[net][send]") {
  bool called = false;
  listener l;
  {
    asio::io_context io;
    connection c(io, l);
    const std::string data = "dropped";
    async_write_batched(c.s, asio::buffer(data), [&](error_code, std::size_t) { called = true; });
  }  // under ASan, a leaked send is an error here
  CHECK_FALSE(called);
}

namespace {

struct read_result {
  error_code ec;
  std::string data;
};

// Starts a batched receive of up to 256 bytes into `buf`; the result lands in `out`.
void start_read(tcp::socket& s, std::array<char, 256>& buf, std::optional<read_result>& out,
                queued* left = nullptr) {
  async_read_batched(
      s, asio::buffer(buf),
      [&](error_code ec, std::size_t n) {
        out = read_result{ec, std::string(buf.data(), n)};
      },
      left);
}

// Runs `io` until `r` is in (bounded).
template <class T>
void run_until_set(asio::io_context& io, std::optional<T>& r) {
  io.restart();
  for (int i = 0; i < 1000 && !r; ++i) io.run_one_for(std::chrono::milliseconds(20));
  REQUIRE(r.has_value());
}

}  // namespace

TEST_CASE("batched receive: waits for bytes, reads them, and tells what is left", "[net][recv]") {
  asio::io_context io;
  listener l;
  connection c(io, l, /*inq=*/true);
  std::array<char, 256> buf;
  std::optional<read_result> r;
  queued left = queued::more;
  // Nothing there yet: the first try finds nothing (EAGAIN) and waits for the next event.
  start_read(c.s, buf, r, &left);
  for (int i = 0; i < 5; ++i) io.run_one_for(std::chrono::milliseconds(10));
  CHECK_FALSE(r.has_value());
  REQUIRE(::send(c.peer, "ab", 2, MSG_NOSIGNAL) == 2);
  run_until_set(io, r);
  CHECK(!r->ec);
  CHECK(r->data == "ab");
  CHECK(left == queued::nothing);
  CHECK(expects_nothing_to_read(c.s));  // the next read waits for epoll, no recvmsg first

  // Bytes and FIN queued behind a short read: "more", and the end-of-file is still reported.
  REQUIRE(::send(c.peer, "cdef", 4, MSG_NOSIGNAL) == 4);
  ::shutdown(c.peer, SHUT_WR);
  for (int i = 0; i < 1000; ++i) {
    int inq = 0;
    ::ioctl(c.s.native_handle(), FIONREAD, &inq);
    if (inq == 4) break;
    ::usleep(1000);
  }
  std::array<char, 256> small;
  std::optional<read_result> r2;
  async_read_batched(
      c.s, asio::buffer(small.data(), 2),
      [&](error_code ec, std::size_t n) {
        r2 = read_result{ec, std::string(small.data(), n)};
      },
      &left);
  run_until_set(io, r2);
  CHECK(r2->data == "cd");
  CHECK(left == queued::more);
  std::optional<read_result> r3, r4;
  start_read(c.s, buf, r3);
  run_until_set(io, r3);
  CHECK(r3->data == "ef");
  start_read(c.s, buf, r4);
  run_until_set(io, r4);
  CHECK(r4->ec == asio::error::eof);
}

TEST_CASE("batched receive: cancelled while waiting, or while queued for the flush",
          "[net][recv]") {
  asio::io_context io;
  listener l;
  connection c(io, l);
  std::array<char, 256> buf;

  SECTION("waiting for readiness: socket.cancel()") {
    std::optional<read_result> r;
    start_read(c.s, buf, r);
    for (int i = 0; i < 5; ++i) io.run_one_for(std::chrono::milliseconds(10));
    REQUIRE_FALSE(r.has_value());
    error_code ec;
    c.s.cancel(ec);
    run_until_set(io, r);
    CHECK(r->ec == asio::error::operation_aborted);
  }
  SECTION("queued for the flush: cancel_io()") {
    if (!uring_allowed()) return;
    REQUIRE(::send(c.peer, "xy", 2, MSG_NOSIGNAL) == 2);
    for (int i = 0; i < 1000; ++i) {
      int inq = 0;
      ::ioctl(c.s.native_handle(), FIONREAD, &inq);
      if (inq == 2) break;
      ::usleep(1000);
    }
    std::optional<read_result> r;
    // Readiness is known at once (a fresh socket may be read at once): its completion runs
    // first and queues the receive; the handler posted next cancels before the flush.
    start_read(c.s, buf, r);
    asio::post(io, [&] {
      error_code ec;
      cancel_io(c.s, ec);
    });
    run_until_set(io, r);
    CHECK(r->ec == asio::error::operation_aborted);
    CHECK(r->data.empty());
    // The bytes are still there for the next read.
    std::optional<read_result> again;
    start_read(c.s, buf, again);
    run_until_set(io, again);
    CHECK(again->data == "xy");
  }
  SECTION("queued for the flush: closed") {
    if (!uring_allowed()) return;
    REQUIRE(::send(c.peer, "xy", 2, MSG_NOSIGNAL) == 2);
    std::optional<read_result> r;
    start_read(c.s, buf, r);
    asio::post(io, [&] { c.s.close(); });
    run_until_set(io, r);
    CHECK(r->ec == asio::error::operation_aborted);
  }
}

TEST_CASE("batched receive: an io_context destroyed with receives pending frees them",
          "[net][recv]") {
  bool called = false;
  listener l;
  std::array<char, 256> buf, buf2;
  {
    asio::io_context io;
    connection waiting(io, l), queued_one(io, l);
    // One waits in the reactor; the other has readiness and sits in the batch.
    expect_nothing_to_read(waiting.s);
    async_read_batched(waiting.s, asio::buffer(buf),
                       [&](error_code, std::size_t) { called = true; });
    REQUIRE(::send(queued_one.peer, "z", 1, MSG_NOSIGNAL) == 1);
    async_read_batched(queued_one.s, asio::buffer(buf2),
                       [&](error_code, std::size_t) { called = true; });
    io.poll_one();  // at most the readiness completion: the flush has not run
  }                 // under ASan, a leaked operation is an error here
  CHECK_FALSE(called);
}

TEST_CASE("batched receive: closed by another completion of the same flush", "[net][recv]") {
  if (!uring_allowed()) return;
  asio::io_context io;
  listener l;
  connection a(io, l), b(io, l);
  std::array<char, 256> buf;
  std::optional<read_result> r;
  // The receive on b starts first (a fresh socket may be read at once: its readiness completion
  // is queued), then the send on a posts the flush; both land in the same flush, the send first.
  // Its completion closes b; the receive, which found nothing (EAGAIN), must not wait again.
  start_read(b.s, buf, r);
  std::array<std::optional<result>, 1> w;
  const std::string data = "x";
  async_write_batched(a.s, asio::buffer(data), [&](error_code ec, std::size_t n) {
    w[0] = result{ec, n};
    b.s.close();
  });
  run_until(io, w);
  run_until_set(io, r);
  CHECK(!w[0]->ec);
  CHECK(r->ec == asio::error::operation_aborted);
}
