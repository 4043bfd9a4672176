#include "admin/server.hpp"

#include <catch2/catch.hpp>

#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "sluice/admin/status.hpp"

using namespace sluice;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

struct running_admin {
  config::config cfg;
  std::vector<std::shared_ptr<pool::cluster>> clusters;
  std::shared_ptr<metrics::registry> reg;
  asio::io_context io;
  std::unique_ptr<admin::server> srv;
  std::uint16_t port = 0;
  std::thread thread;

  explicit running_admin(std::string token = {}) {
    cfg.admin.address = "127.0.0.1:0";
    cfg.admin.token = std::move(token);
    config::listener l;
    l.name = "web";
    l.address = "127.0.0.1:0";
    cfg.listeners.push_back(l);
    config::cluster c;
    c.name = "main";
    cfg.clusters.push_back(c);
    auto cl = std::make_shared<pool::cluster>(c);
    cl->update({{*core::resolve("127.0.0.1:8001"), 1}, {*core::resolve("[::1]:8002"), 1}});
    clusters.push_back(cl);
    metrics::layout lay;
    lay.listeners = {"web"};
    lay.clusters = {"main"};
    reg = std::make_shared<metrics::registry>(lay);
    reg->set_backends(admin::backend_enumerator(clusters));
    srv = std::make_unique<admin::server>(io, admin::server_options{&cfg, clusters, reg});
    port = srv->start();
    thread = std::thread([this] { io.run(); });
  }
  ~running_admin() {
    asio::post(io, [this] { srv->stop(); });
    thread.join();
  }

  http::response<http::string_body> call(http::verb method, std::string target,
                                         std::vector<std::pair<std::string, std::string>> headers = {}) {
    asio::io_context cio;
    beast::tcp_stream s(cio);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    for (auto& [k, v] : headers) req.set(k, v);
    req.keep_alive(false);
    req.prepare_payload();
    http::write(s, req);
    beast::flat_buffer b;
    http::response<http::string_body> res;
    http::read(s, b, res);
    return res;
  }
};

}  // namespace

TEST_CASE("admin server endpoints", "[admin][server]") {
  running_admin a;
  auto r = a.call(http::verb::get, "/live");
  CHECK(r.result_int() == 200);
  r = a.call(http::verb::get, "/ready");
  CHECK(r.result_int() == 200);

  r = a.call(http::verb::get, "/metrics");
  CHECK(r.result_int() == 200);
  CHECK(r[http::field::content_type] == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(r.body().find("sluice_backend_ready{backend=\"127.0.0.1:8001\",cluster=\"main\"} 1") !=
        std::string::npos);

  r = a.call(http::verb::get, "/status");
  CHECK(r.result_int() == 200);
  auto doc = boost::json::parse(r.body());
  CHECK(doc.at("clusters").as_array().size() == 1);

  r = a.call(http::verb::get, "/");
  CHECK(r.result_int() == 200);
  CHECK(r.body().find("<title>sluice status</title>") != std::string::npos);

  r = a.call(http::verb::post, "/reload");
  CHECK(r.result_int() == 501);
  r = a.call(http::verb::get, "/reload");
  CHECK(r.result_int() == 405);
  r = a.call(http::verb::get, "/nope");
  CHECK(r.result_int() == 404);

  // Drain / undrain, with a percent-encoded IPv6 address.
  r = a.call(http::verb::post, "/backends/main/%5B%3A%3A1%5D%3A8002/drain");
  CHECK(r.result_int() == 200);
  CHECK(a.clusters[0]->current()->ready.size() == 1);
  r = a.call(http::verb::get, "/backends/main/127.0.0.1:8001/drain");
  CHECK(r.result_int() == 405);
  r = a.call(http::verb::post, "/backends/main/127.0.0.1:9/drain");
  CHECK(r.result_int() == 404);
  r = a.call(http::verb::post, "/backends/nope/127.0.0.1:8001/drain");
  CHECK(r.result_int() == 404);
  r = a.call(http::verb::post, "/backends/main/%zz/drain");
  CHECK(r.result_int() == 400);
  r = a.call(http::verb::post, "/backends/main/[::1]:8002/undrain");
  CHECK(r.result_int() == 200);
  CHECK(a.clusters[0]->current()->ready.size() == 2);
  // A web page elsewhere may not drain.
  r = a.call(http::verb::post, "/backends/main/127.0.0.1:8001/drain",
             {{"Origin", "http://evil.example"}});
  CHECK(r.result_int() == 403);
  CHECK(a.clusters[0]->current()->ready.size() == 2);

  a.srv->set_draining();
  r = a.call(http::verb::get, "/ready");
  CHECK(r.result_int() == 503);
}

TEST_CASE("admin server bearer token", "[admin][server]") {
  running_admin a("0123456789abcdef");
  CHECK(a.call(http::verb::get, "/metrics").result_int() == 401);
  CHECK(a.call(http::verb::get, "/status", {{"Authorization", "Bearer wrong"}}).result_int() == 401);
  CHECK(a.call(http::verb::get, "/status", {{"Authorization", "Bearer 0123456789abcdef"}})
            .result_int() == 200);
  CHECK(a.call(http::verb::post, "/backends/main/127.0.0.1:8001/drain").result_int() == 401);
  CHECK(a.call(http::verb::get, "/live").result_int() == 200);
  CHECK(a.call(http::verb::get, "/ready").result_int() == 200);
  CHECK(a.call(http::verb::get, "/").result_int() == 200);
}

TEST_CASE("admin server rejects oversized and malformed requests", "[admin][server]") {
  running_admin a;
  auto r = a.call(http::verb::get, "/live", {{"X-Big", std::string(20000, 'a')}});
  CHECK(r.result_int() == 413);
  // Still serving afterwards.
  CHECK(a.call(http::verb::get, "/live").result_int() == 200);
}

TEST_CASE("admin server start fails clearly on a taken address", "[admin][server]") {
  running_admin a;
  config::config cfg;
  cfg.admin.address = "127.0.0.1:" + std::to_string(a.port);
  asio::io_context io;
  admin::server s(io, admin::server_options{&cfg, {}, nullptr});
  CHECK_THROWS_WITH(s.start(), Catch::Contains("admin listener 127.0.0.1:"));
}
