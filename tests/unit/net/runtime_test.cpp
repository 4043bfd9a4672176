#include "net/runtime.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "sluice/core/address.hpp"

namespace net = sluice::net;
using namespace std::chrono_literals;

namespace {

// A blocking connect to 127.0.0.1:port, closed at once (the listener's backlog keeps it).
bool connect_once(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

template <class Pred>
bool wait_for(Pred pred, std::chrono::seconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

TEST_CASE("connections go to the least loaded worker, whichever worker accepts them",
          "[net][runtime]") {
  net::runtime rt(2);
  std::atomic<std::size_t> served[2] = {0, 0};
  std::atomic<bool> wrong_thread{false};
  net::listen_spec spec;
  spec.name = "t";
  spec.address = *sluice::core::resolve("127.0.0.1:0", nullptr, true);
  // Worker 0 serves 10 connections that stay; worker 1 starts empty.
  spec.load = [&](unsigned w) { return served[w].load() + (w == 0 ? 10 : 0); };
  spec.on_accept = [&](unsigned w, boost::asio::ip::tcp::socket s) {
    // Called on the thread of the worker whose context the socket belongs to.
    if (!rt.io(w).get_executor().running_in_this_thread()) wrong_thread = true;
    served[w].fetch_add(1);
  };
  const auto port = rt.listen(spec);
  std::thread runner([&] { rt.run(5000ms); });

  // Worker 1 stays at least two below worker 0 (10) for its first 8 connections: each of
  // them ends on worker 1, even those the kernel gave to worker 0.
  for (int i = 0; i < 8; ++i) REQUIRE(connect_once(port));
  CHECK(wait_for([&] { return served[0] + served[1] == 8; }));
  CHECK(served[1] == 8);
  CHECK(served[0] == 0);

  // From there on neither gets two ahead of the other (loads 10 + a and b).
  for (int i = 0; i < 12; ++i) REQUIRE(connect_once(port));
  CHECK(wait_for([&] { return served[0] + served[1] == 20; }));
  const long a = static_cast<long>(served[0]) + 10, b = static_cast<long>(served[1]);
  CHECK(std::labs(a - b) <= 2);
  CHECK_FALSE(wrong_thread);

  rt.stop();
  runner.join();
}

TEST_CASE("without a load function, connections are served on their worker's thread",
          "[net][runtime]") {
  net::runtime rt(2);
  std::atomic<std::size_t> served{0};
  std::atomic<bool> wrong_thread{false};
  net::listen_spec spec;
  spec.name = "t";
  spec.address = *sluice::core::resolve("127.0.0.1:0", nullptr, true);
  spec.on_accept = [&](unsigned w, boost::asio::ip::tcp::socket) {
    if (!rt.io(w).get_executor().running_in_this_thread()) wrong_thread = true;
    served.fetch_add(1);
  };
  const auto port = rt.listen(spec);
  std::thread runner([&] { rt.run(5000ms); });
  for (int i = 0; i < 6; ++i) REQUIRE(connect_once(port));
  CHECK(wait_for([&] { return served == 6; }));
  CHECK_FALSE(wrong_thread);
  rt.stop();
  runner.join();
}
