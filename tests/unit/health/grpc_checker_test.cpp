#include "health/checker.hpp"

#include <catch2/catch.hpp>

#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "fake_upstream.hpp"
#include "sluice/h2/session.hpp"

using namespace sluice;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the fake grpc.health.v1 server answers.
struct answer {
  std::string status = "200";
  std::string grpc_status = "0";
  std::string message = std::string("\x08\x01", 2);  // HealthCheckResponse{SERVING}
  bool garbage = false;                               // answer with bytes that are not HTTP/2
  bool silent = false;                                // accept, then never answer
};

// An in-process HTTP/2 server (the h2 server session) answering every stream with `answer`,
// recording the last request.
class fake_grpc_server : public h2::session_handler {
 public:
  fake_grpc_server(asio::io_context& io, answer a)
      : io_(io), acceptor_(io, {asio::ip::address_v4::loopback(), 0}), answer_(std::move(a)) {}

  std::string address() const { return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }

  void start() {
    asio::co_spawn(io_, serve(), asio::detached);
  }

  h2::header_list request;
  std::string request_body;

  void on_headers(std::int32_t, h2::header_list& headers, bool, bool) override { request = headers; }
  void on_data(std::int32_t id, std::span<const std::uint8_t> d) override {
    request_body.append(reinterpret_cast<const char*>(d.data()), d.size());
    session_->consume(id, d.size());
  }
  void on_end_stream(std::int32_t id) override {
    session_->submit_response(id, {{":status", answer_.status}, {"content-type", "application/grpc"}}, false);
    std::string frame(5, '\0');
    frame[4] = static_cast<char>(answer_.message.size());
    session_->send_data(id, frame + answer_.message);
    h2::header_list trailers{{"grpc-status", answer_.grpc_status}};
    session_->end_stream(id, &trailers);
  }
  void on_stream_close(std::int32_t, std::uint32_t) override {}

 private:
  asio::awaitable<void> serve() {
    auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
    if (ec) co_return;
    if (answer_.garbage) {
      co_await asio::async_write(sock, asio::buffer(std::string("HTTP/1.1 400 Bad\r\n\r\n")), use_tuple);
      co_return;
    }
    h2::session s(h2::role::server, *this);
    session_ = &s;
    char in[16 * 1024];
    std::string out;
    while (true) {
      auto [rec, n] = co_await sock.async_read_some(asio::buffer(in), use_tuple);
      if (rec) break;
      if (answer_.silent) continue;
      if (!s.receive(std::string_view(in, n))) break;
      out.clear();
      while (s.send(out) > 0) {
      }
      if (!out.empty())
        if (auto [wec, m] = co_await asio::async_write(sock, asio::buffer(out), use_tuple); wec) break;
    }
    session_ = nullptr;
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  answer answer_;
  h2::session* session_ = nullptr;
};

health::check_result probe(asio::io_context& io, health::checker& c, const std::string& address,
                           std::chrono::milliseconds timeout = 2s) {
  core::backend b(*core::resolve(address), 1);
  std::optional<health::check_result> out;
  asio::co_spawn(io, c.probe(b, timeout), [&](std::exception_ptr e, health::check_result r) {
    if (e) r = {core::check_code::protocol_error, 0, "exception"};
    out = std::move(r);
  });
  REQUIRE(test::run_until(io, [&] { return out.has_value(); }));
  return *out;
}

// Probes a fake server answering `a`; with `check_request`, also checks what the probe sent
// (for service "hello").
health::check_result probe_answer(answer a, const std::string& service = "",
                                  std::chrono::milliseconds timeout = 2s, bool check_request = false) {
  asio::io_context io;
  fake_grpc_server server(io, std::move(a));
  server.start();
  config::health_check cfg;
  cfg.type = config::health_check::kind::grpc;
  cfg.service = service;
  auto checker = health::make_checker(cfg);
  REQUIRE(checker);
  auto r = probe(io, *checker, server.address(), timeout);
  if (check_request) {
    CHECK(h2::find_header(server.request, ":path") == "/grpc.health.v1.Health/Check");
    CHECK(h2::find_header(server.request, ":method") == "POST");
    CHECK(h2::find_header(server.request, "content-type") == "application/grpc");
    CHECK(h2::find_header(server.request, "te") == "trailers");
    CHECK(h2::find_header(server.request, ":authority") == server.address());
    CHECK(server.request_body == std::string("\0\0\0\0\x07\x0a\x05hello", 12));
  }
  return r;
}

}  // namespace

TEST_CASE("grpc check passes on SERVING and sends a well-formed request", "[health][grpc]") {
  auto r = probe_answer({}, "hello", 2s, true);
  CHECK(r.passed());
  CHECK(r.status == 200);
  CHECK(probe_answer({}).passed());
}

TEST_CASE("grpc check failures name their cause", "[health][grpc]") {
  answer not_serving;
  not_serving.message = std::string("\x08\x02", 2);
  auto r = probe_answer(not_serving);
  CHECK(r.code == core::check_code::not_serving);
  CHECK(std::string(core::to_string(r.code)) == "not_serving");
  CHECK(r.detail == "not_serving");

  answer unknown;
  unknown.message = "";
  CHECK(probe_answer(unknown).detail == "unknown");

  answer service_unknown;
  service_unknown.message = std::string("\x08\x03", 2);
  CHECK(probe_answer(service_unknown).detail == "service_unknown");

  answer unimplemented;
  unimplemented.grpc_status = "12";
  r = probe_answer(unimplemented);
  CHECK(r.code == core::check_code::grpc_status);
  CHECK(r.detail == "grpc_status_12");

  answer http_500;
  http_500.status = "500";
  r = probe_answer(http_500);
  CHECK(r.code == core::check_code::bad_status);
  CHECK(r.status == 500);

  answer bad_protobuf;
  bad_protobuf.message = "\xff";
  CHECK(probe_answer(bad_protobuf).code == core::check_code::bad_body);

  answer garbage;
  garbage.garbage = true;
  CHECK(probe_answer(garbage).code == core::check_code::protocol_error);

  answer silent;
  silent.silent = true;
  CHECK(probe_answer(silent, "", 200ms).code == core::check_code::timeout);
}

TEST_CASE("grpc check fails to connect to a closed port", "[health][grpc]") {
  asio::io_context io;
  tcp::acceptor a(io, {asio::ip::address_v4::loopback(), 0});
  auto address = "127.0.0.1:" + std::to_string(a.local_endpoint().port());
  a.close();
  config::health_check cfg;
  cfg.type = config::health_check::kind::grpc;
  auto checker = health::make_checker(cfg);
  CHECK(probe(io, *checker, address).code == core::check_code::connect_failed);
}
