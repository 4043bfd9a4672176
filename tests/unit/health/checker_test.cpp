#include "health/checker.hpp"

#include <catch2/catch.hpp>

#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "fake_upstream.hpp"

using namespace sluice;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

core::backend make_backend(const std::string& address) {
  return core::backend(*core::resolve(address), 1);
}

health::check_result probe(asio::io_context& io, health::checker& c, const core::backend& b,
                           std::chrono::milliseconds timeout = 2s) {
  std::optional<health::check_result> out;
  asio::co_spawn(io, c.probe(b, timeout), [&](std::exception_ptr e, health::check_result r) {
    if (e) r = {core::check_code::protocol_error, 0, "exception"};
    out = std::move(r);
  });
  REQUIRE(test::run_until(io, [&] { return out.has_value(); }));
  return *out;
}

config::health_check http_config() {
  config::health_check h;
  h.type = config::health_check::kind::http;
  h.path = "/healthz";
  return h;
}

// A port nobody listens on: bind one, note it, close it.
std::string closed_address(asio::io_context& io) {
  asio::ip::tcp::acceptor a(io, {asio::ip::address_v4::loopback(), 0});
  auto port = a.local_endpoint().port();
  a.close();
  return "127.0.0.1:" + std::to_string(port);
}

}  // namespace

TEST_CASE("tcp check passes on a listening port and fails on a closed one", "[health][checker]") {
  asio::io_context io;
  auto up = std::make_shared<test::fake_upstream>(io);
  up->start();
  auto tcp = health::make_tcp_checker();

  auto ok = probe(io, *tcp, make_backend(up->address()));
  CHECK(ok.passed());
  CHECK(ok.code == core::check_code::ok);

  auto bad = probe(io, *tcp, make_backend(closed_address(io)));
  CHECK_FALSE(bad.passed());
  CHECK(bad.code == core::check_code::connect_failed);
  CHECK_FALSE(bad.detail.empty());
  up->close();
}

TEST_CASE("http check: 200 passes, 503 fails, wrong body fails", "[health][checker]") {
  asio::io_context io;
  auto up = std::make_shared<test::fake_upstream>(io);
  up->start();
  const auto b = make_backend(up->address());

  auto cfg = http_config();
  auto http = health::make_http_checker(cfg);
  up->response = test::fake_upstream::reply(200, "ok");
  auto r = probe(io, *http, b);
  CHECK(r.passed());
  CHECK(r.status == 200);
  CHECK(up->last_request.starts_with("GET /healthz HTTP/1.1\r\n"));
  CHECK(up->last_request.find("Host: " + up->address() + "\r\n") != std::string::npos);

  up->response = test::fake_upstream::reply(503, "down");
  r = probe(io, *http, b);
  CHECK(r.code == core::check_code::bad_status);
  CHECK(r.status == 503);

  up->response = test::fake_upstream::reply(302, "");  // default range 200-399
  CHECK(probe(io, *http, b).passed());

  cfg.expect_status = {{200, 200}, {204, 204}};
  cfg.expect_body = "ok";
  cfg.host = "health.example";
  cfg.method = "HEAD";
  cfg.expect_body.clear();
  auto strict = health::make_http_checker(cfg);
  CHECK(probe(io, *strict, b).code == core::check_code::bad_status);  // 302 no longer accepted
  CHECK(up->last_request.starts_with("HEAD /healthz HTTP/1.1\r\n"));
  CHECK(up->last_request.find("Host: health.example\r\n") != std::string::npos);

  cfg.method = "GET";
  cfg.expect_body = "\"status\":\"serving\"";
  auto body = health::make_http_checker(cfg);
  up->response = test::fake_upstream::reply(200, "{\"status\":\"serving\"}");
  CHECK(probe(io, *body, b).passed());
  up->response = test::fake_upstream::reply(200, "{\"status\":\"starting\"}");
  r = probe(io, *body, b);
  CHECK(r.code == core::check_code::bad_body);
  CHECK(r.status == 200);
  up->response = test::fake_upstream::reply(200, std::string(100 * 1024, 'x'));
  CHECK(probe(io, *body, b).code == core::check_code::protocol_error);  // over 64 KiB

  up->response = "garbage\r\n\r\n";
  CHECK(probe(io, *http, b).code == core::check_code::protocol_error);
  up->close();
}

TEST_CASE("http check times out on a silent upstream", "[health][checker]") {
  asio::io_context io;
  auto up = std::make_shared<test::fake_upstream>(io);
  up->silent = true;
  up->start();
  auto http = health::make_http_checker(http_config());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = probe(io, *http, make_backend(up->address()), 200ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(r.code == core::check_code::timeout);
  CHECK(took >= 150ms);
  CHECK(took < 5s);
  up->close();
}

TEST_CASE("http check on a closed port fails to connect", "[health][checker]") {
  asio::io_context io;
  auto http = health::make_http_checker(http_config());
  CHECK(probe(io, *http, make_backend(closed_address(io))).code == core::check_code::connect_failed);
}

TEST_CASE("make_checker picks the kind", "[health][checker]") {
  config::health_check h;
  CHECK(health::make_checker(h) == nullptr);
  h.type = config::health_check::kind::grpc;
  CHECK(health::make_checker(h) != nullptr);
  h.type = config::health_check::kind::tcp;
  CHECK(health::make_checker(h) != nullptr);
  h.type = config::health_check::kind::http;
  CHECK(health::make_checker(h) != nullptr);
  CHECK(health::status_expected(200, {{200, 399}}));
  CHECK(health::status_expected(399, {{200, 399}}));
  CHECK_FALSE(health::status_expected(400, {{200, 399}}));
  CHECK(health::status_expected(503, {{200, 200}, {500, 503}}));
  CHECK_FALSE(health::status_expected(200, {}));
}
