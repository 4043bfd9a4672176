// HTTP/2 connections are counted per worker: the accept hand-off weighs a worker's load with
// them (src/app.cpp, listen_spec::load).
#include "h2/proxy.hpp"

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "http/proxy.hpp"
#include "sluice/config/loader.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TEST_CASE("downstream HTTP/2 connections count for the worker that serves them", "[h2]") {
  auto loaded = sluice::config::load_string(
      "listeners:\n"
      "  - {name: web, address: 127.0.0.1:0,\n"
      "     routes: [{match: {path_prefix: /}, direct: {status: 204}}]}\n",
      "count.yaml");
  REQUIRE(loaded.errors.empty());
  auto cfg = std::make_shared<const sluice::config::config>(std::move(*loaded.value));
  auto state = sluice::http::make_listener_state(cfg, cfg->listeners[0], 0, {});

  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket served = acceptor.accept();

  constexpr unsigned worker = 3;  // this thread serves as worker 3
  const std::size_t before = sluice::h2::active_sessions(worker);
  const std::size_t before_other = sluice::h2::active_sessions(0);
  const std::size_t before_all = sluice::h2::active_sessions();
  // The client preface as if the HTTP/1.1 side had read it (h2c with prior knowledge).
  sluice::h2::start_server_session(std::move(served), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", state,
                                   worker);
  CHECK(sluice::h2::active_sessions(worker) == before + 1);
  CHECK(sluice::h2::active_sessions(0) == before_other);
  CHECK(sluice::h2::active_sessions() == before_all + 1);

  // The client goes away: the session ends and is no longer counted.
  client.close();
  for (int i = 0; i < 500 && sluice::h2::active_sessions(worker) != before; ++i)
    io.run_for(std::chrono::milliseconds(20));
  CHECK(sluice::h2::active_sessions(worker) == before);
  CHECK(sluice::h2::active_sessions() == before_all);
}
