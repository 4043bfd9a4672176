#include "sluice/health/monitor.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "health/checker.hpp"
#include "sluice/health/outlier.hpp"
#include "sluice/health/state.hpp"
#include "sluice/log/log.hpp"

namespace sluice::health {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

std::int64_t system_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// One backend under watch. Owned by the monitor state; the probe coroutine holds it too, so a
// backend that leaves the cluster mid-probe is finished with safely.
struct target {
  target(asio::io_context& io, core::backend_ptr b, hysteresis h)
      : backend(std::move(b)), verdict(h), probe_timer(io), eject_timer(io) {}

  core::backend_ptr backend;
  hysteresis verdict;
  asio::steady_timer probe_timer;
  asio::steady_timer eject_timer;
  ejection_record ejections;
  bool stopped = false;
};

class monitor_state : public std::enable_shared_from_this<monitor_state> {
 public:
  monitor_state(asio::io_context& io, std::shared_ptr<pool::cluster> c, std::shared_ptr<checker> p)
      : io_(io),
        cluster_(std::move(c)),
        cfg_(cluster_->config()),
        checker_(std::move(p)),
        ramp_timer_(io),
        rng_(std::random_device{}()) {}

  void start() {
    std::weak_ptr<monitor_state> weak = shared_from_this();
    asio::io_context* io = &io_;
    watch_id_ = cluster_->watch([weak, io] {
      asio::post(*io, [weak] {
        if (auto s = weak.lock()) s->sync();
      });
    });
    // Runs on a worker thread: only hand the backend over to the control thread.
    cluster_->on_failure_streak([weak, io](core::backend_ptr b) {
      asio::post(*io, [weak, b = std::move(b)] {
        if (auto s = weak.lock()) s->on_streak(b);
      });
    });
    asio::post(io_, [weak] {
      if (auto s = weak.lock()) s->sync();
    });
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    cluster_->unwatch(watch_id_);
    cluster_->on_failure_streak({});
    ramp_timer_.cancel();
    for (auto& [p, t] : targets_) halt(*t);
    targets_.clear();
  }

  void sync() {
    if (stopped_) return;
    auto snap = cluster_->current();
    std::unordered_set<const core::backend*> present;
    for (const auto& b : snap->backends) {
      present.insert(b.get());
      if (targets_.count(b.get())) continue;
      auto& h = b->health();
      // A backend that replaces another (weight change) carries its verdict over; a new one
      // starts healthy but unconfirmed.
      const auto start = !h.checked_healthy.load(std::memory_order_relaxed) ? hysteresis::start::unhealthy
                                                                             : hysteresis::start::optimistic;
      auto t = std::make_shared<target>(io_, b, hysteresis(cfg_.health.healthy, cfg_.health.unhealthy, start));
      targets_.emplace(b.get(), t);
      if (checker_) {
        asio::co_spawn(io_, probe_loop(shared_from_this(), t), asio::detached);
      }
      if (h.ejected.load(std::memory_order_relaxed)) {
        // Carried over while ejected: keep the remaining time.
        const auto left = std::chrono::milliseconds(
            h.ejected_until_ms.load(std::memory_order_relaxed) - system_ms(std::chrono::system_clock::now()));
        schedule_return(t, std::max(left, std::chrono::milliseconds(0)));
      }
    }
    for (auto it = targets_.begin(); it != targets_.end();) {
      if (present.count(it->first)) {
        ++it;
        continue;
      }
      halt(*it->second);
      it = targets_.erase(it);
    }
    after_publish();
  }

  void on_streak(const core::backend_ptr& b) {
    if (stopped_ || !cfg_.outlier.enabled) return;
    auto it = targets_.find(b.get());
    if (it == targets_.end() || it->second->backend != b) return;  // left the cluster meanwhile
    auto& t = it->second;
    auto& h = b->health();
    if (h.ejected.load(std::memory_order_relaxed)) return;
    std::size_t ejected = 0;
    for (const auto& [p, other] : targets_)
      if (other->backend->health().ejected.load(std::memory_order_relaxed)) ++ejected;
    const std::uint32_t streak = h.consecutive_failures.load(std::memory_order_relaxed);
    if (!may_eject(ejected, targets_.size(), cfg_.outlier.max_ejection_percent)) {
      SLUICE_LOG(warn, "cluster " << cfg_.name << ": backend " << b->name() << " failed " << streak
                                  << " times in a row but stays: max_ejection_percent "
                                  << cfg_.outlier.max_ejection_percent << " reached ("
                                  << ejected << " of " << targets_.size() << " ejected)");
      return;
    }
    const auto length = t->ejections.eject(steady::now(), cfg_.outlier);
    h.ejected_until_ms.store(system_ms(std::chrono::system_clock::now()) + length.count(),
                             std::memory_order_relaxed);
    h.ejections.fetch_add(1, std::memory_order_relaxed);
    h.consecutive_failures.store(0, std::memory_order_relaxed);
    h.ejected.store(true, std::memory_order_relaxed);
    SLUICE_LOG(warn, "cluster " << cfg_.name << ": backend " << b->name() << " ejected for "
                                << length.count() << "ms after " << streak
                                << " consecutive failures (ejection #" << t->ejections.multiplier()
                                << " in a row)");
    cluster_->refresh();
    after_publish();
    schedule_return(t, length);
  }

 private:
  static void halt(target& t) {
    t.stopped = true;
    t.probe_timer.cancel();
    t.eject_timer.cancel();
  }

  void schedule_return(const std::shared_ptr<target>& t, std::chrono::milliseconds after) {
    t->eject_timer.expires_after(after);
    std::weak_ptr<monitor_state> weak = shared_from_this();
    t->eject_timer.async_wait([weak, t](boost::system::error_code ec) {
      if (ec || t->stopped) return;
      if (auto s = weak.lock()) s->give_back(*t);
    });
  }

  void give_back(target& t) {
    if (stopped_) return;
    auto& h = t.backend->health();
    h.consecutive_failures.store(0, std::memory_order_relaxed);
    h.ejected.store(false, std::memory_order_relaxed);
    h.ejected_until_ms.store(0, std::memory_order_relaxed);
    t.ejections.returned(steady::now());
    SLUICE_LOG(info, "cluster " << cfg_.name << ": backend " << t.backend->name()
                                << " returns after its ejection");
    cluster_->refresh();
    after_publish();
  }

  static asio::awaitable<void> probe_loop(std::shared_ptr<monitor_state> self, std::shared_ptr<target> t) {
    constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
    t->probe_timer.expires_after(self->first_delay());
    co_await t->probe_timer.async_wait(use_tuple);
    while (!self->stopped_ && !t->stopped) {
      check_result r;
      try {
        r = co_await self->checker_->probe(*t->backend, self->cfg_.health.timeout);
      } catch (const std::exception& e) {
        r = {core::check_code::protocol_error, 0, e.what()};
      }
      if (self->stopped_ || t->stopped) break;
      self->on_result(*t, r);
      t->probe_timer.expires_after(self->next_delay(t->verdict.healthy()));
      co_await t->probe_timer.async_wait(use_tuple);
    }
  }

  void on_result(target& t, const check_result& r) {
    auto& h = t.backend->health();
    constexpr auto relaxed = std::memory_order_relaxed;
    h.last_check.store(r.code, relaxed);
    h.last_check_status.store(r.status, relaxed);
    h.last_check_ms.store(system_ms(std::chrono::system_clock::now()), relaxed);
    (r.passed() ? h.checks_passed : h.checks_failed).fetch_add(1, relaxed);
    if (!r.passed())
      SLUICE_LOG(debug, "cluster " << cfg_.name << ": health check of " << t.backend->name()
                                   << " failed: " << core::to_string(r.code) << " (" << r.detail << ")");
    if (!t.verdict.observe(r.passed())) return;
    const bool up = t.verdict.healthy();
    h.checked_healthy.store(up, relaxed);
    h.health_flips.fetch_add(1, relaxed);
    if (up)
      SLUICE_LOG(info, "cluster " << cfg_.name << ": backend " << t.backend->name()
                                  << " is healthy again (" << cfg_.health.healthy
                                  << " checks passed)");
    else
      SLUICE_LOG(warn, "cluster " << cfg_.name << ": backend " << t.backend->name()
                                  << " is unhealthy: " << core::to_string(r.code)
                                  << (r.detail.empty() ? "" : " (" + r.detail + ")"));
    cluster_->refresh();
    after_publish();
  }

  // After every publish: log panic transitions, keep slow-start steps going.
  void after_publish() {
    auto snap = cluster_->current();
    if (snap->panic != panic_) {
      panic_ = snap->panic;
      if (panic_)
        SLUICE_LOG(warn, "cluster " << cfg_.name << ": no ready backend, panic mode "
                                    << (cfg_.panic == config::panic_mode::spread
                                            ? "spread: using all " + std::to_string(snap->ready.size()) + " backends"
                                            : std::string("fail: requests get 503")));
      else
        SLUICE_LOG(info, "cluster " << cfg_.name << ": leaves panic mode, "
                                    << snap->ready.size() << " backend(s) ready");
    }
    if (cluster_->ramping() && !ramp_armed_) {
      ramp_armed_ = true;
      const auto step = std::max<config::duration>(cfg_.slow_start / 10, 10ms);
      ramp_timer_.expires_after(step);
      std::weak_ptr<monitor_state> weak = shared_from_this();
      ramp_timer_.async_wait([weak](boost::system::error_code ec) {
        auto s = weak.lock();
        if (!s) return;
        s->ramp_armed_ = false;
        if (ec || s->stopped_) return;
        s->cluster_->refresh();
        s->after_publish();
      });
    }
  }

  // Jitter span for a base interval: `jitter` when set, else jitter_fraction * base; <= base.
  config::duration jitter_span(config::duration base) const {
    config::duration j = cfg_.health.jitter.count() > 0
                             ? cfg_.health.jitter
                             : config::duration(static_cast<config::duration::rep>(
                                   static_cast<double>(base.count()) * cfg_.health.jitter_fraction));
    return std::clamp(j, config::duration(0), base);
  }

  config::duration draw(config::duration span) {
    if (span.count() <= 0) return config::duration(0);
    return config::duration(std::uniform_int_distribution<config::duration::rep>(0, span.count())(rng_));
  }

  config::duration first_delay() { return draw(jitter_span(cfg_.health.interval)); }

  config::duration next_delay(bool healthy) {
    const auto base = healthy || cfg_.health.unhealthy_interval.count() <= 0
                          ? cfg_.health.interval
                          : cfg_.health.unhealthy_interval;
    const auto j = jitter_span(base);
    return std::max<config::duration>(base - j / 2 + draw(j), 1ms);
  }

  asio::io_context& io_;
  std::shared_ptr<pool::cluster> cluster_;
  const config::cluster& cfg_;  // owned by cluster_
  std::shared_ptr<checker> checker_;
  std::unordered_map<const core::backend*, std::shared_ptr<target>> targets_;
  asio::steady_timer ramp_timer_;
  std::mt19937_64 rng_;
  std::uint64_t watch_id_ = 0;
  bool stopped_ = false;
  bool panic_ = false;
  bool ramp_armed_ = false;
};

class monitor_impl final : public monitor {
 public:
  explicit monitor_impl(std::shared_ptr<monitor_state> s) : state_(std::move(s)) {}
  ~monitor_impl() override { stop(); }
  void sync() override { state_->sync(); }
  void stop() override { state_->stop(); }

 private:
  std::shared_ptr<monitor_state> state_;
};

}  // namespace

std::unique_ptr<monitor> make_monitor(asio::io_context& control, std::shared_ptr<pool::cluster> cluster,
                                      std::shared_ptr<checker> probe) {
  auto state = std::make_shared<monitor_state>(control, std::move(cluster), std::move(probe));
  state->start();
  return std::make_unique<monitor_impl>(std::move(state));
}

std::unique_ptr<monitor> make_monitor(asio::io_context& control, std::shared_ptr<pool::cluster> cluster) {
  const auto& cfg = cluster->config();
  // gRPC probes of a protocol h2 cluster go over TLS with its settings, as its traffic does.
  std::shared_ptr<checker> probe =
      cfg.health.type == config::health_check::kind::grpc &&
              cfg.protocol == config::upstream_protocol::h2
          ? make_grpc_checker(cfg.health, &cfg)
          : make_checker(cfg.health);
  return make_monitor(control, std::move(cluster), std::move(probe));
}

}  // namespace sluice::health
