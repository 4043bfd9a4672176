#include "sluice/discovery/etcd_source.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "discovery/etcd_client.hpp"
#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_protocol.hpp"
#include "sluice/discovery/key_table.hpp"
#include "sluice/discovery/persist.hpp"
#include "sluice/log/log.hpp"

namespace sluice::discovery {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr etcd::milliseconds connect_timeout = 3s;
constexpr etcd::milliseconds request_timeout = 10s;
constexpr std::chrono::milliseconds backoff_base = 200ms;
constexpr std::chrono::milliseconds backoff_cap = 10s;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Why a session ended, and what the next one must do.
struct session_end {
  bool progressed = false;  // a watch was established: reset the backoff
  bool canceled = false;    // etcd canceled the watch (compaction): not an outage
  std::string reason;
};

class source_impl : public std::enable_shared_from_this<source_impl> {
 public:
  source_impl(asio::io_context& io, const config::cluster& c, update_handler cb,
              std::vector<pool::endpoint> statics, std::shared_ptr<asio::ssl::context> tls)
      : io_(io),
        name_(c.name),
        cfg_(*c.discovery),
        on_update_(std::move(cb)),
        static_(std::move(statics)),
        tls_(std::move(tls)),
        creds_{cfg_.username, cfg_.password},
        timer_(io),
        rng_(std::random_device{}()),
        table_([this](const std::string& key, const std::string& reason) {
          state_.skipped_values.fetch_add(1, std::memory_order_relaxed);
          SLUICE_LOG(warn, "cluster " << name_ << ": etcd key " << key << " skipped: " << reason);
        }) {
    // What the cluster routes to before etcd answered: its static endpoints.
    last_ = static_;
  }

  void start() {
    if (started_) return;
    started_ = true;
    asio::co_spawn(io_, run(shared_from_this()), asio::detached);
  }

  void stop() {
    if (io_.get_executor().running_in_this_thread()) {
      halt();
    } else {
      asio::post(io_, [self = shared_from_this()] { self->halt(); });
    }
  }

  const source_state& state() const noexcept { return state_; }

 private:
  void halt() {
    stopped_ = true;
    timer_.cancel();
    if (conn_) conn_->close();
    state_.connected.store(false);
  }

  void deliver(const std::vector<pool::endpoint>& discovered, bool from_etcd) {
    if (stopped_) return;
    auto merged = merge_endpoints(static_, discovered);
    if (delivered_once_ && same_endpoints(merged, last_)) return;
    delivered_once_ = true;
    last_ = merged;
    state_.endpoints.store(static_cast<std::uint32_t>(merged.size()));
    state_.updates.fetch_add(1, std::memory_order_relaxed);
    std::string list;
    for (const auto& e : merged) {
      if (!list.empty()) list += ' ';
      list += e.address.text;
      if (e.weight != 1) list += "*" + std::to_string(e.weight);
    }
    SLUICE_LOG(info, "cluster " << name_ << ": " << merged.size() << " endpoint(s) "
                                << (from_etcd ? "from etcd" : "from " + cfg_.persist)
                                << " (revision " << table_.revision() << "): " << list);
    if (from_etcd && !cfg_.persist.empty()) {
      std::string err;
      if (!save_endpoints(cfg_.persist, discovered, &err))
        SLUICE_LOG(warn, "cluster " << name_ << ": cannot persist the endpoint set: " << err);
    }
    on_update_(std::move(merged));
  }

  void load_persisted() {
    if (cfg_.persist.empty() || delivered_once_) return;
    std::string err;
    std::size_t bad = 0;
    auto eps = load_endpoints(cfg_.persist, &err, &bad);
    if (!eps) {
      SLUICE_LOG(warn, "cluster " << name_ << ": etcd unreachable and no usable persisted set: " << err);
      return;
    }
    if (bad) state_.skipped_values.fetch_add(bad, std::memory_order_relaxed);
    SLUICE_LOG(warn, "cluster " << name_ << ": etcd unreachable at startup; using the last known set from "
                                << cfg_.persist);
    deliver(*eps, false);
  }

  std::chrono::milliseconds backoff(unsigned failures) {
    // Exponential with "equal jitter": uniform in [d/2, d], so many proxies restarted together
    // do not hammer a recovering etcd in lockstep.
    auto d = backoff_base;
    for (unsigned i = 1; i < failures && d < backoff_cap; ++i) d *= 2;
    d = std::min(d, std::chrono::duration_cast<std::chrono::milliseconds>(backoff_cap));
    std::uniform_int_distribution<std::int64_t> pick(d.count() / 2, d.count());
    return std::chrono::milliseconds(pick(rng_));
  }

  static asio::awaitable<void> run(std::shared_ptr<source_impl> self) {
    auto& s = *self;
    const std::size_t n = s.cfg_.endpoints.size();
    std::size_t next = std::uniform_int_distribution<std::size_t>(0, n - 1)(s.rng_);
    unsigned failures = 0;
    std::size_t attempts_before_sync = 0;
    // Per etcd member: a failure unlike the previous one there is logged whatever the count.
    std::vector<std::string> last_reason(n);
    while (!s.stopped_) {
      const std::string& ep = s.cfg_.endpoints[next % n];
      session_end end = co_await s.session(ep);
      if (s.stopped_) break;
      s.state_.connected.store(false);
      s.state_.disconnects.fetch_add(1, std::memory_order_relaxed);
      if (end.progressed) failures = 0;
      ++failures;
      if (!s.synced_ && ++attempts_before_sync >= n) s.load_persisted();
      const auto delay = end.progressed ? std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 100)(s.rng_))
                                        : s.backoff(failures);
      if (end.canceled) {
        SLUICE_LOG(info, "cluster " << s.name_ << ": etcd " << ep << ": " << end.reason);
      } else if (failures == 1 || (failures & (failures - 1)) == 0 || failures % 32 == 0 ||
                 end.reason != last_reason[next % n]) {
        SLUICE_LOG(warn, "cluster " << s.name_ << ": etcd " << ep << ": " << end.reason << "; keeping the last known "
                                    << s.last_.size() << " endpoint(s); retrying in " << delay.count() << "ms"
                                    << (failures > 1 ? " (attempt " + std::to_string(failures) + ")" : ""));
      }
      last_reason[next % n] = end.canceled ? std::string() : end.reason;
      // Move on to the next etcd member, unless the watch was merely canceled (compaction).
      if (!end.canceled) ++next;
      s.timer_.expires_after(delay);
      co_await s.timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::awaitable<session_end> session(const std::string& ep) {
    session_end end;
    conn_ = std::make_unique<etcd::connection>(io_.get_executor(), tls_);
    auto& c = *conn_;
    if (auto ec = co_await c.connect(ep, connect_timeout)) {
      end.reason = c.last_error();
      co_return end;
    }
    if (stopped_) co_return end;
    if (!creds_.username.empty()) {
      if (auto ec = co_await c.authenticate(creds_, request_timeout)) {
        end.reason = c.last_error();
        co_return end;
      }
    }
    if (need_full_read_ || !synced_) {
      etcd::http_reply reply;
      if (auto ec = co_await c.call("/v3/kv/range", etcd::range_request(cfg_.prefix), creds_, reply,
                                    request_timeout)) {
        end.reason = c.last_error();
        co_return end;
      }
      if (stopped_) co_return end;
      std::string err;
      auto range = etcd::parse_range_response(reply.body, &err);
      if (!range) {
        end.reason = "reading " + cfg_.prefix + ": " + etcd::explain_gateway_error(err, tls_ != nullptr);
        co_return end;
      }
      state_.full_reads.fetch_add(1, std::memory_order_relaxed);
      state_.last_contact_ms.store(now_ms());
      const bool changed = table_.reset(range->kvs, range->revision);
      if (changed) state_.last_event_ms.store(now_ms());
      state_.revision.store(table_.revision());
      synced_ = true;
      need_full_read_ = false;
      deliver(table_.endpoints(), true);
    }

    const std::int64_t from = table_.revision() + 1;
    unsigned status = 0;
    if (auto ec = co_await c.open_stream("/v3/watch", etcd::watch_request(cfg_.prefix, from), status,
                                         request_timeout)) {
      end.reason = c.last_error();
      co_return end;
    }
    if (status != 200) {
      std::string body;
      while (!co_await c.read_stream(body) && body.size() < 65536) {
      }
      auto e = etcd::parse_error(body);
      end.reason = "watch answered HTTP " + std::to_string(status) + (e ? ": " + e->message : "");
      if (e && e->is_auth()) c.clear_token();
      co_return end;
    }
    etcd::watch_decoder decoder;
    std::vector<etcd::watch_message> messages;
    std::string piece;
    for (;;) {
      piece.clear();
      if (auto ec = co_await c.read_stream(piece)) {
        end.reason = c.last_error();
        co_return end;
      }
      if (stopped_) co_return end;
      messages.clear();
      std::string err;
      if (!decoder.feed(piece, messages, &err)) {
        end.reason = err;
        co_return end;
      }
      for (const auto& m : messages) {
        state_.last_contact_ms.store(now_ms());
        if (!m.error.empty()) {
          end.reason = "watch error: " + m.error;
          co_return end;
        }
        if (m.canceled) {
          end.progressed = true;  // not an outage: start over at once
          end.canceled = true;
          need_full_read_ = true;
          if (m.compact_revision > 0) {
            end.reason = "watch revision " + std::to_string(from) + " was compacted (oldest kept: " +
                         std::to_string(m.compact_revision) + "); reading the whole prefix again";
          } else {
            // etcd refused the watch itself (an expired token, a user without read permission
            // on the prefix, ...). Back off: retrying at once could spin for good.
            end.reason = "watch canceled by etcd" + (m.cancel_reason.empty() ? "" : ": " + m.cancel_reason);
            end.progressed = end.canceled = false;
            etcd::gateway_error ge{0, m.cancel_reason};
            if (ge.is_auth()) c.clear_token();
          }
          co_return end;
        }
        if (m.created) {
          end.progressed = true;
          state_.connected.store(true);
          SLUICE_LOG(info, "cluster " << name_ << ": watching etcd " << ep << " prefix " << cfg_.prefix
                                      << " from revision " << from);
        }
        if (!m.events.empty()) state_.last_event_ms.store(now_ms());
        if (table_.apply(m)) deliver(table_.endpoints(), true);
        state_.revision.store(table_.revision());
      }
    }
  }

  asio::io_context& io_;
  std::string name_;
  config::etcd_discovery cfg_;
  update_handler on_update_;
  std::vector<pool::endpoint> static_;
  std::shared_ptr<asio::ssl::context> tls_;
  etcd::credentials creds_;
  asio::steady_timer timer_;
  std::mt19937_64 rng_;
  source_state state_;
  key_table table_;
  std::unique_ptr<etcd::connection> conn_;
  std::vector<pool::endpoint> last_;
  bool started_ = false;
  bool stopped_ = false;
  bool synced_ = false;          // one full read succeeded
  bool need_full_read_ = true;   // the next session starts with a full read
  bool delivered_once_ = false;
};

class source_handle final : public etcd_source {
 public:
  explicit source_handle(std::shared_ptr<source_impl> impl) : impl_(std::move(impl)) {}
  ~source_handle() override { impl_->stop(); }
  void start() override { impl_->start(); }
  void stop() override { impl_->stop(); }
  const source_state& state() const noexcept override { return impl_->state(); }

 private:
  std::shared_ptr<source_impl> impl_;
};

}  // namespace

std::unique_ptr<etcd_source> make_etcd_source(asio::io_context& control, const config::cluster& cluster,
                                              update_handler on_update, std::string* error) {
  auto fail = [&](std::string msg) -> std::unique_ptr<etcd_source> {
    if (error) *error = "cluster " + cluster.name + ": " + std::move(msg);
    return nullptr;
  };
  if (!cluster.discovery) return fail("no etcd discovery configured");
  if (cluster.discovery->endpoints.empty()) return fail("discovery.etcd.endpoints is empty");
  if (!on_update) return fail("no update handler");
  std::vector<pool::endpoint> statics;
  for (const auto& e : cluster.endpoints) {
    std::string err;
    auto addr = core::resolve(e.address, &err);
    if (!addr) return fail("endpoint " + e.address + ": " + err);
    statics.push_back({std::move(*addr), e.weight});
  }
  std::shared_ptr<asio::ssl::context> tls;
  if (cluster.discovery->tls) {
    std::string err;
    tls = etcd::make_tls_context(*cluster.discovery->tls, &err);
    if (!tls) return fail(err);
  }
  auto impl = std::make_shared<source_impl>(control, cluster, std::move(on_update), std::move(statics),
                                            std::move(tls));
  return std::make_unique<source_handle>(std::move(impl));
}

}  // namespace sluice::discovery
