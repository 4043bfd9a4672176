// Loopback connections for the net module's tests: a listener on port 0, the test's blocking
// peer, and the proxy's end accepted and adopted the way the runtime does it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "net/socket_adopt.hpp"

namespace sluice::net::test {

// A loopback listener on port 0 (blocking, plain fds: the test's side of the connections).
struct listener {
  int fd = -1;
  sockaddr_in addr{};
  listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  }
  ~listener() { ::close(fd); }
};

// The test's peer: a blocking socket connected to `l`.
inline int connect_to(const listener& l) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&l.addr), sizeof l.addr) == 0);
  return fd;
}

// The proxy's side: accepted the way the runtime does (accept4 + adopt_nonblocking), with
// TCP_INQ enabled when `inq`.
inline boost::asio::ip::tcp::socket accept_adopted(boost::asio::io_context& io, const listener& l,
                                                   bool inq) {
  const int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  REQUIRE(fd >= 0);
  if (inq) {
    int one = 1;
    REQUIRE(::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof one) == 0);
  }
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  adopt_nonblocking(s, boost::asio::ip::tcp::v4(), fd, ec);
  REQUIRE(!ec);
  return s;
}

}  // namespace sluice::net::test
