#include "sluice/health/monitor.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include "fake_upstream.hpp"
#include "health/checker.hpp"
#include "sluice/pool/lease.hpp"

using namespace sluice;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

config::cluster cluster_config() {
  config::cluster c;
  c.name = "web";
  return c;
}

pool::endpoint ep(const std::string& address) { return {*core::resolve(address), 1}; }

core::backend* find(const pool::snapshot& s, const std::string& name) {
  for (const auto& b : s.backends)
    if (b->name() == name) return b.get();
  return nullptr;
}

bool is_ready(const pool::cluster& c, const std::string& name) {
  for (const auto& b : c.current()->ready)
    if (b->name() == name) return true;
  return false;
}

}  // namespace

TEST_CASE("http checks take a failing backend out and bring it back", "[health][monitor]") {
  asio::io_context io;
  auto good = std::make_shared<test::fake_upstream>(io);
  auto flaky = std::make_shared<test::fake_upstream>(io);
  good->start();
  flaky->start();
  auto cfg = cluster_config();
  cfg.health.type = config::health_check::kind::http;
  cfg.health.path = "/healthz";
  cfg.health.interval = 20ms;
  cfg.health.unhealthy_interval = 10ms;
  cfg.health.jitter_fraction = 0.5;
  cfg.health.timeout = 1s;
  cfg.health.healthy = 2;
  cfg.health.unhealthy = 2;
  auto c = std::make_shared<pool::cluster>(cfg);
  c->update({ep(good->address()), ep(flaky->address())});
  auto m = health::make_monitor(io, c);

  // Both answer 200: the first checks confirm them.
  REQUIRE(test::run_until(io, [&] { return flaky->accepted >= 2 && good->accepted >= 2; }));
  CHECK(is_ready(*c, flaky->address()));
  core::backend* fb = find(*c->current(), flaky->address());
  CHECK(fb->health().last_check.load() == core::check_code::ok);
  CHECK(fb->health().last_check_status.load() == 200);
  CHECK(fb->health().last_check_ms.load() > 0);

  flaky->response = test::fake_upstream::reply(503, "no");
  REQUIRE(test::run_until(io, [&] { return !is_ready(*c, flaky->address()); }));
  CHECK(fb->state() == core::health_state::unhealthy);
  CHECK(fb->health().last_check.load() == core::check_code::bad_status);
  CHECK(fb->health().health_flips.load() == 1);
  CHECK(is_ready(*c, good->address()));

  flaky->response = test::fake_upstream::reply(200, "ok");
  REQUIRE(test::run_until(io, [&] { return is_ready(*c, flaky->address()); }));
  CHECK(fb->state() == core::health_state::healthy);
  CHECK(fb->health().health_flips.load() == 2);

  m->stop();
  good->close();
  flaky->close();
  io.run_for(50ms);
}

TEST_CASE("a new backend that fails its first check is out at once", "[health][monitor]") {
  asio::io_context io;
  auto good = std::make_shared<test::fake_upstream>(io);
  good->start();
  asio::ip::tcp::acceptor closed(io, {asio::ip::address_v4::loopback(), 0});
  const std::string dead = "127.0.0.1:" + std::to_string(closed.local_endpoint().port());
  closed.close();

  auto cfg = cluster_config();
  cfg.health.type = config::health_check::kind::tcp;
  cfg.health.interval = 10s;  // only the first check can happen within the test
  cfg.health.unhealthy = 3;
  auto c = std::make_shared<pool::cluster>(cfg);
  c->update({ep(good->address()), ep(dead)});
  CHECK(is_ready(*c, dead));  // optimistic until checked
  auto m = health::make_monitor(io, c);
  REQUIRE(test::run_until(io, [&] { return !is_ready(*c, dead); }));
  CHECK(find(*c->current(), dead)->health().last_check.load() == core::check_code::connect_failed);
  CHECK(is_ready(*c, good->address()));

  // Membership: a backend that joins is checked at once, one that leaves is forgotten.
  auto third = std::make_shared<test::fake_upstream>(io);
  third->start();
  c->update({ep(good->address()), ep(third->address())});
  REQUIRE(test::run_until(io, [&] {
    auto* b = find(*c->current(), third->address());
    return b && b->health().last_check.load() == core::check_code::ok;
  }));
  CHECK(c->current()->ready.size() == 2);
  m.reset();  // destructor stops everything
  io.run_for(20ms);
  good->close();
  third->close();
}

TEST_CASE("passive failures eject a backend, which returns after base_ejection", "[health][monitor][outlier]") {
  asio::io_context io;
  auto cfg = cluster_config();
  cfg.outlier.enabled = true;
  cfg.outlier.consecutive = 2;
  cfg.outlier.base_ejection = 100ms;
  cfg.outlier.max_ejection = 1s;
  cfg.outlier.max_ejection_percent = 50;
  auto c = std::make_shared<pool::cluster>(cfg);
  c->update({ep("127.0.0.1:8001"), ep("127.0.0.1:8002")});
  auto m = health::make_monitor(io, c, nullptr);
  io.restart();
  io.run_for(10ms);  // first sync

  auto snap = c->current();
  core::backend* b1 = find(*snap, "127.0.0.1:8001");
  core::backend* b2 = find(*snap, "127.0.0.1:8002");
  auto fail = [](core::backend* b, int n) {
    for (int i = 0; i < n; ++i) pool::lease(*b).report(pool::outcome::connect_failure);
  };
  fail(b1, 2);
  REQUIRE(test::run_until(io, [&] { return !is_ready(*c, "127.0.0.1:8001"); }));
  CHECK(b1->state() == core::health_state::ejected);
  CHECK(b1->health().ejections.load() == 1);
  CHECK(b1->health().consecutive_failures.load() == 0);

  // The cap: ejecting the second of two would exceed 50%.
  fail(b2, 2);
  io.restart();
  io.run_for(20ms);
  CHECK(b2->state() == core::health_state::healthy);
  CHECK(b2->health().ejections.load() == 0);

  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(test::run_until(io, [&] { return is_ready(*c, "127.0.0.1:8001"); }));
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  CHECK(b1->state() == core::health_state::healthy);

  // Ejected again soon after: twice as long (base * 2).
  fail(b1, 2);
  REQUIRE(test::run_until(io, [&] { return !is_ready(*c, "127.0.0.1:8001"); }));
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(b1->health().ejected_until_ms.load() - now_ms > 120);
  CHECK(b1->health().ejections.load() == 2);
  m->stop();
  io.run_for(10ms);
}

TEST_CASE("slow start steps run while a backend ramps", "[health][monitor][slow_start]") {
  asio::io_context io;
  auto cfg = cluster_config();
  cfg.slow_start = 200ms;
  auto c = std::make_shared<pool::cluster>(cfg);
  c->update({ep("127.0.0.1:8001")});
  auto m = health::make_monitor(io, c, nullptr);
  c->update({ep("127.0.0.1:8001"), ep("127.0.0.1:8002")});
  CHECK(c->ramping());
  const auto v = c->version();
  REQUIRE(test::run_until(io, [&] { return !c->ramping(); }));
  CHECK(c->version() >= v + 5);  // rebuilt in steps
  CHECK(c->current()->weights.empty());
  m->stop();
}
