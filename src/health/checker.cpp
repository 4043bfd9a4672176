#include "health/checker.hpp"

#include <cstring>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace sluice::health {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t max_header_bytes = 16 * 1024;
constexpr std::uint64_t max_body_bytes = 64 * 1024;

tcp::endpoint to_endpoint(const core::address& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  return ep;
}

check_result failure(core::check_code code, std::string detail, std::uint16_t status = 0) {
  return {code, status, std::move(detail)};
}

// A timeout from beast::tcp_stream's deadline, or the I/O error as it is.
check_result io_failure(const boost::system::error_code& ec, core::check_code otherwise,
                        std::string_view phase) {
  if (ec == beast::error::timeout) return failure(core::check_code::timeout, std::string(phase) + ": timed out");
  return failure(otherwise, std::string(phase) + ": " + ec.message());
}

class tcp_checker final : public checker {
 public:
  asio::awaitable<check_result> probe(const core::backend& b,
                                      std::chrono::milliseconds timeout) override {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(timeout);
    auto [ec] = co_await stream.async_connect(to_endpoint(b.addr()), use_tuple);
    if (ec) co_return io_failure(ec, core::check_code::connect_failed, "connect");
    co_return check_result{core::check_code::ok, 0, {}};
  }
};

class http_checker final : public checker {
 public:
  explicit http_checker(const config::health_check& cfg) : cfg_(cfg) {}

  asio::awaitable<check_result> probe(const core::backend& b,
                                      std::chrono::milliseconds timeout) override {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    // One deadline for the whole exchange: Beast applies it to every operation started until
    // it is set again.
    stream.expires_after(timeout);
    if (auto [ec] = co_await stream.async_connect(to_endpoint(b.addr()), use_tuple); ec)
      co_return io_failure(ec, core::check_code::connect_failed, "connect");

    http::request<http::empty_body> req;
    req.version(11);
    req.method_string(cfg_.method);
    req.target(cfg_.path);
    req.set(http::field::host, cfg_.host.empty() ? b.name() : cfg_.host);
    req.set(http::field::user_agent, "sluice-health/" SLUICE_VERSION);
    req.set(http::field::connection, "close");
    if (auto [ec, n] = co_await http::async_write(stream, req, use_tuple); ec)
      co_return io_failure(ec, core::check_code::protocol_error, "send");

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.header_limit(max_header_bytes);
    parser.body_limit(max_body_bytes);
    if (cfg_.method == "HEAD") parser.skip(true);
    if (auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_tuple); ec)
      co_return io_failure(ec, core::check_code::protocol_error, "response head");

    const unsigned status = parser.get().result_int();
    const auto st = static_cast<std::uint16_t>(status);
    if (!status_expected(status, cfg_.expect_status))
      co_return failure(core::check_code::bad_status, "status " + std::to_string(status), st);
    if (cfg_.expect_body.empty()) co_return check_result{core::check_code::ok, st, {}};

    if (auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple); ec) {
      if (ec == http::error::body_limit)
        co_return failure(core::check_code::protocol_error, "body larger than 64 KiB", st);
      co_return io_failure(ec, core::check_code::protocol_error, "response body");
    }
    if (parser.get().body().find(cfg_.expect_body) == std::string::npos)
      co_return failure(core::check_code::bad_body, "body does not contain the expected text", st);
    co_return check_result{core::check_code::ok, st, {}};
  }

 private:
  config::health_check cfg_;
};

}  // namespace

bool status_expected(std::uint32_t status, const std::vector<config::status_range>& ranges) noexcept {
  for (const auto& r : ranges)
    if (status >= r.lo && status <= r.hi) return true;
  return false;
}

std::unique_ptr<checker> make_tcp_checker() { return std::make_unique<tcp_checker>(); }

std::unique_ptr<checker> make_http_checker(const config::health_check& cfg) {
  return std::make_unique<http_checker>(cfg);
}

std::unique_ptr<checker> make_checker(const config::health_check& cfg) {
  switch (cfg.type) {
    case config::health_check::kind::tcp: return make_tcp_checker();
    case config::health_check::kind::http: return make_http_checker(cfg);
    case config::health_check::kind::grpc: return make_grpc_checker(cfg);
    case config::health_check::kind::none: break;
  }
  return nullptr;
}

}  // namespace sluice::health
