// In-process upstream for health tests: answers every request on 127.0.0.1 with a set response.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace sluice::test {

/// Accepts on 127.0.0.1:0 and answers each connection's request head with `response` (then
/// closes), or with nothing at all when `silent` (it waits for the client to give up).
/// Single-threaded: runs on the io_context it is given.
class fake_upstream : public std::enable_shared_from_this<fake_upstream> {
 public:
  explicit fake_upstream(boost::asio::io_context& io)
      : acceptor_(io, {boost::asio::ip::address_v4::loopback(), 0}) {}

  static std::string reply(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port()); }

  void start() {
    boost::asio::co_spawn(acceptor_.get_executor(), accept_loop(shared_from_this()),
                          boost::asio::detached);
  }
  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

  std::string response = reply(200, "ok");
  bool silent = false;
  int accepted = 0;
  std::string last_request;

 private:
  static boost::asio::awaitable<void> accept_loop(std::shared_ptr<fake_upstream> self) {
    for (;;) {
      auto [ec, s] = co_await self->acceptor_.async_accept(
          boost::asio::as_tuple(boost::asio::use_awaitable));
      if (ec) co_return;
      ++self->accepted;
      boost::asio::co_spawn(self->acceptor_.get_executor(), serve(self, std::move(s)),
                            boost::asio::detached);
    }
  }

  static boost::asio::awaitable<void> serve(std::shared_ptr<fake_upstream> self,
                                            boost::asio::ip::tcp::socket s) {
    constexpr auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
    std::string buf;
    auto [ec, n] = co_await boost::asio::async_read_until(s, boost::asio::dynamic_buffer(buf),
                                                          "\r\n\r\n", tuple);
    if (ec) co_return;
    self->last_request = buf.substr(0, n);
    if (self->silent) {
      char c;
      co_await boost::asio::async_read(s, boost::asio::buffer(&c, 1), tuple);  // until closed
      co_return;
    }
    co_await boost::asio::async_write(s, boost::asio::buffer(self->response), tuple);
    boost::system::error_code ignored;
    s.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  }

  boost::asio::ip::tcp::acceptor acceptor_;
};

/// Runs `io` until `done()` is true or `limit` passes; returns done().
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred done,
               std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

}  // namespace sluice::test
