// HTTP/2 streams relayed over HTTP/1.1 upstream connections. Everything of one worker runs on
// its thread: nothing here locks.
#include "http1_bridge.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "http/chunked_decoder.hpp"
#include "net/relay_read.hpp"
#include "net/io_batch.hpp"
#include "sluice/http/forwarding.hpp"
#include "sluice/http/message_head.hpp"
#include "sluice/log/log.hpp"
#include "sluice/pool/lease.hpp"

namespace sluice::h2 {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t relay_size = 16 * 1024;
// Response bytes queued toward the client beyond which the upstream is not read: with the
// client's flow-control window closed, this bounds what one stream holds.
constexpr std::size_t response_queue_limit = 64 * 1024;
// A request body up to this size is kept to be replayed on another connection.
constexpr std::size_t replay_limit = 64 * 1024;
constexpr unsigned max_tries_cap = 16;

tcp::endpoint endpoint_of(const core::address& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  return ep;
}

[[gnu::noinline, gnu::cold]] void log_warn(const std::string& what) { SLUICE_LOG(warn, what); }
[[gnu::noinline, gnu::cold]] void log_debug(const std::string& what) { SLUICE_LOG(debug, what); }

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

}  // namespace

// ---- ring_hash key ---------------------------------------------------------------------------

std::uint64_t request_hash(const config::hash_on& on, const header_list& req,
                           std::string_view client_ip) noexcept {
  using kind = config::hash_on::kind;
  if (on.what == kind::header) {
    // HTTP/2 field names are lower case; the configured name may not be.
    for (const auto& f : req) {
      if (f.name.size() != on.name.size()) continue;
      bool same = true;
      for (std::size_t i = 0; i < f.name.size() && same; ++i)
        same = lower(f.name[i]) == lower(on.name[i]);
      if (same) return balance::hash_key(f.value);
    }
    return balance::hash_key({});
  }
  if (on.what == kind::cookie) {
    for (const auto& f : req) {
      if (f.name != "cookie") continue;
      std::string_view v = f.value;
      while (!v.empty()) {
        auto semi = v.find(';');
        auto item = v.substr(0, semi);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        if (item.size() > on.name.size() && item.substr(0, on.name.size()) == on.name &&
            item[on.name.size()] == '=')
          return balance::hash_key(item.substr(on.name.size() + 1));
        if (semi == std::string_view::npos) break;
        v.remove_prefix(semi + 1);
      }
    }
  }
  return balance::hash_key(client_ip);
}

// ---- pool ----------------------------------------------------------------------------------

void http1_pool::put(std::shared_ptr<http::upstream_conn> c, const config::cluster& cfg) {
  pool_.put(std::move(c), cfg.pool.max_idle, cfg.pool.idle_timeout);
  if (!ticking_ && pool_.idle() > 0) tick();
}

void http1_pool::tick() {
  ticking_ = true;
  timer_.expires_after(1s);
  std::weak_ptr<http1_pool> weak = shared_from_this();
  timer_.async_wait([weak](error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self) return;
    self->pool_.sweep(steady::now());
    if (self->pool_.idle() > 0) self->tick();
    else self->ticking_ = false;
  });
}

// ---- exchange ------------------------------------------------------------------------------

http1_exchange::http1_exchange(asio::any_io_executor ex, http1_params params, http1_port& port)
    : ex_(ex), params_(std::move(params)), port_(&port), body_signal_(ex), drain_signal_(ex),
      read_timer_(ex), write_timer_(ex) {}

std::shared_ptr<http1_exchange> http1_exchange::start(asio::any_io_executor ex,
                                                      const header_list& request,
                                                      bool end_stream, http1_params params,
                                                      http1_port& port) {
  auto x = std::make_shared<http1_exchange>(ex, std::move(params), port);
  x->client_ip_ = std::string(x->params_.forward.client_ip);
  x->proto_ = std::string(x->params_.forward.proto);
  forward_info fwd = x->params_.forward;
  fwd.client_ip = x->client_ip_;
  fwd.proto = x->proto_;
  x->head_ = to_http1_request(request, end_stream, fwd);
  if (!x->head_.error.empty()) {
    x->response_done_ = true;
    x->port_ = nullptr;
    port.on_failure(400, x->head_.error);
    return x;
  }
  auto method = find_header(request, ":method");
  x->idempotent_ = http::is_idempotent(method);
  x->head_request_ = method == "HEAD";
  x->body_ended_ = end_stream;
  const auto& cfg = x->params_.cluster->config();
  if (cfg.policy == config::policy_kind::ring_hash)
    x->hash_ = request_hash(cfg.hash, request, x->client_ip_);
  asio::co_spawn(ex, x->run(x), asio::detached);
  return x;
}

void http1_exchange::push_body(std::span<const std::uint8_t> data) {
  if (data.empty()) return;
  received_ += data.size();
  if (detached_ || response_done_) {
    acknowledge(received_);  // nobody needs it any more
    return;
  }
  pending_.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (replayable_) {
    if (replay_.size() + data.size() <= replay_limit) {
      replay_.append(reinterpret_cast<const char*>(data.data()), data.size());
    } else {
      replayable_ = false;
      std::string().swap(replay_);
    }
  }
  body_signal_.cancel();
}

void http1_exchange::end_body(const header_list* trailers) {
  if (body_ended_) return;
  body_ended_ = true;
  if (trailers) request_trailers_ = to_h2_trailers(*trailers);
  body_signal_.cancel();
}

void http1_exchange::wake() { drain_signal_.cancel(); }

std::size_t http1_exchange::detach() {
  detached_ = true;
  port_ = nullptr;
  std::size_t unacked = static_cast<std::size_t>(received_ - acked_);
  acked_ = received_;
  if (conn_) {
    error_code ec;
    conn_->socket.close(ec);
  }
  body_signal_.cancel();
  drain_signal_.cancel();
  read_timer_.cancel();
  write_timer_.cancel();
  return unacked;
}

void http1_exchange::acknowledge(std::uint64_t upto) {
  upto = std::min(upto, received_);
  if (upto <= acked_) return;
  auto n = static_cast<std::size_t>(upto - acked_);
  acked_ = upto;
  if (port_) port_->on_request_consumed(n);
}

void http1_exchange::fail(unsigned status, std::string_view message) {
  response_done_ = true;
  if (!port_) return;
  // The stream is answered: release what the client sent (later bytes are the caller's).
  acknowledge(received_);
  std::exchange(port_, nullptr)->on_failure(status, message);
}

// One timer per direction; an expiry marks the attempt timed out and cancels the connection's
// operations (both directions: the attempt is over either way). A re-armed or disarmed timer's
// old handler sees operation_aborted; an expiry already queued when that happened is told apart
// by the deadline it was armed for.
void http1_exchange::arm(asio::steady_timer& t, std::chrono::milliseconds d) {
  if (d <= 0ms) {
    t.expires_at(steady::time_point::max());
    return;
  }
  auto at = steady::now() + d;
  t.expires_at(at);
  std::weak_ptr<http1_exchange> weak = shared_from_this();
  t.async_wait([weak, &t, at](error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self || t.expiry() != at) return;  // re-armed or disarmed since
    self->timed_out_ = true;
    if (self->conn_) {
      error_code ignored;
      net::cancel_io(self->conn_->socket, ignored);
    }
  });
}

namespace {
void disarm(asio::steady_timer& t) {
  t.expires_at(steady::time_point::max());  // cancels the wait; see arm()
}
}  // namespace

asio::awaitable<void> http1_exchange::run(std::shared_ptr<http1_exchange> self) {
  const auto& cfg = params_.cluster->config();
  auto snap = params_.cache->hold();
  params_.cache = nullptr;
  balance::pick_context ctx;
  ctx.hash = hash_;
  std::array<core::backend*, max_tries_cap> tried{};
  std::size_t ntried = 0;
  unsigned max_tries = std::clamp<unsigned>(cfg.max_tries, 1, max_tries_cap);
  unsigned fail_status = 0;
  bool attempted = false;

  while (ntried < max_tries && !detached_) {
    ctx.exclude = std::span<core::backend* const>(tried.data(), ntried);
    core::backend* b = snap->pick(ctx);
    if (!b || ctx.excluded(b)) break;
    tried[ntried++] = b;
    if (port_) port_->on_attempt(b, snap);
    pool::lease lease(*b);
    bool fresh_only = false;
    bool next_backend = false;
    while (!next_backend) {
      b->stats().requests.fetch_add(1, std::memory_order_relaxed);
      std::shared_ptr<http::upstream_conn> conn = fresh_only ? nullptr : params_.pool->take(b);
      bool reused = conn != nullptr;
      timed_out_ = false;
      if (!conn) {
        conn = std::make_shared<http::upstream_conn>(ex_);
        conn->backend = b;
        conn_ = conn;
        arm(write_timer_, cfg.timeouts.connect);
        auto [ec] = co_await conn->socket.async_connect(endpoint_of(b->addr()), use_tuple);
        disarm(write_timer_);
        if (detached_) co_return;
        if (ec) {
          conn_.reset();
          lease.report(pool::outcome::connect_failure);
          log_warn("upstream " + b->name() + " connect " +
                   (timed_out_ ? std::string("timed out") : "failed: " + ec.message()) +
                   " (cluster " + cfg.name + ")");
          fail_status = timed_out_ ? 504 : 502;
          break;  // the request was not sent: next backend
        }
        error_code ignored;
        conn->socket.set_option(tcp::no_delay(true), ignored);
        net::enable_inq(conn->socket);
      }
      conn_ = conn;
      if (attempted) pending_ = replay_;  // a replay sends the whole body again
      attempted = true;
      bool stale = false;
      auto r = co_await attempt(*conn, lease, reused, stale, fail_status);
      conn_.reset();
      if (detached_) {
        error_code ignored;
        conn->socket.close(ignored);
        co_return;
      }
      if (r == result::done) {
        if (conn->socket.is_open() && request_written_ && !writer_failed_) {
          conn->keep = snap;
          params_.pool->put(std::move(conn), cfg);
        }
        co_return;
      }
      {
        error_code ignored;
        conn->socket.close(ignored);
      }
      if (r == result::over) co_return;
      // Failed before any response byte reached the client: replay when nothing is lost.
      bool replayable = replayable_ && idempotent_;
      if (stale && replayable && !fresh_only) {
        fresh_only = true;  // a pooled connection the upstream had closed: same backend, fresh
        continue;
      }
      if (!replayable) {
        fail(fail_status ? fail_status : 502, "upstream failed");
        co_return;
      }
      next_backend = true;
    }
  }
  if (detached_) co_return;
  if (ntried == 0) {
    log_warn("no backend available in cluster " + cfg.name);
    fail(503, "no healthy upstream");
    co_return;
  }
  fail(fail_status ? fail_status : 502, "no upstream could be reached");
}

asio::awaitable<http1_exchange::result> http1_exchange::attempt(http::upstream_conn& conn,
                                                                pool::lease& lease, bool reused,
                                                                bool& stale,
                                                                unsigned& fail_status) {
  using namespace asio::experimental::awaitable_operators;
  sent_ = 0;
  request_written_ = false;
  writer_failed_ = false;
  attempt_over_ = false;
  response_started_ = false;
  writer_running_ = true;
  co_return co_await (write_request(conn) &&
                      read_response(conn, lease, reused, stale, fail_status));
}

asio::awaitable<void> http1_exchange::write_request(http::upstream_conn& conn) {
  const auto& cfg = params_.cluster->config();
  bool first = true;
  static constexpr std::string_view crlf = "\r\n";
  std::string tail;  // the last chunk and trailers
  for (;;) {
    if (attempt_over_ || detached_) break;
    bool chunked = head_.framing == body_framing::chunked;
    if (!first && pending_.empty() && !body_ended_) {
      body_signal_.expires_at(steady::time_point::max());
      co_await body_signal_.async_wait(use_tuple);
      continue;
    }
    writing_.clear();
    std::swap(writing_, pending_);
    bool last = false;
    switch (head_.framing) {
      case body_framing::none: last = true; writing_.clear(); break;
      case body_framing::length:
        if (sent_ + writing_.size() > head_.length) {
          // More than the client declared (nghttp2 refuses this first; never desync the
          // upstream connection).
          writer_failed_ = true;
          attempt_over_ = true;
          error_code ignored;
          conn.socket.close(ignored);
          writer_running_ = false;
          co_return;
        }
        last = sent_ + writing_.size() == head_.length;
        if (body_ended_ && !last) {  // fewer bytes than declared
          writer_failed_ = true;
          error_code ignored;
          conn.socket.close(ignored);
          writer_running_ = false;
          co_return;
        }
        break;
      case body_framing::chunked: last = body_ended_; break;
    }
    char size_line[24];
    std::size_t sl = 0;
    if (chunked && !writing_.empty()) {
      auto r = std::to_chars(size_line, size_line + 16, writing_.size(), 16);
      sl = static_cast<std::size_t>(r.ptr - size_line);
      size_line[sl++] = '\r';
      size_line[sl++] = '\n';
    }
    tail.clear();
    if (chunked && last) {
      tail = "0\r\n";
      for (const auto& t : request_trailers_) {
        tail += t.name;
        tail += ": ";
        tail += t.value;
        tail += "\r\n";
      }
      tail += "\r\n";
    }
    std::array<asio::const_buffer, 5> bufs{
        asio::buffer(head_.head.data(), first ? head_.head.size() : 0),
        asio::buffer(size_line, sl), asio::buffer(writing_),
        asio::buffer(crlf.data(), chunked && !writing_.empty() ? 2 : 0), asio::buffer(tail)};
    arm(write_timer_, cfg.timeouts.write);
    auto [ec, n] = co_await net::async_write_batched(conn.socket, bufs, use_tuple);
    disarm(write_timer_);
    if (detached_) break;
    if (ec) {
      writer_failed_ = true;  // the response side sees the failure too, or has the answer
      break;
    }
    first = false;
    sent_ += writing_.size();
    acknowledge(sent_);
    if (last) {
      request_written_ = true;
      break;
    }
  }
  writer_running_ = false;
}

asio::awaitable<http1_exchange::result> http1_exchange::read_response(
    http::upstream_conn& conn, pool::lease& lease, bool reused, bool& stale,
    unsigned& fail_status) {
  const auto& cfg = params_.cluster->config();
  auto* b = conn.backend;
  // Ends the body half: it stops at its next step; a body not fully written closes the
  // connection (and with it a write in flight).
  auto end_writer = [&](bool close) {
    attempt_over_ = true;
    body_signal_.cancel();
    if (close || !request_written_) {
      error_code ignored;
      conn.socket.close(ignored);
    }
  };
  auto failed = [&](unsigned status) {
    fail_status = status;
    end_writer(true);
    return result::failed;
  };

  http::response_head head;
  bool got_any = false;
  // 1. The response head, skipping interim 1xx responses.
  for (;;) {
    if (conn.buffer.size() > 0) {
      got_any = true;
      auto buffered = std::string_view(static_cast<const char*>(conn.buffer.data().data()),
                                       conn.buffer.size());
      const char* error = "";
      auto r = http::parse_response_head(buffered, http::response_header_limit, head_request_, head,
                                         &error);
      if (r == http::head_parse::done) {
        if (head.status >= 100 && head.status < 200 && head.status != 101) {
          conn.buffer.consume(head.size);
          continue;
        }
        break;
      }
      if (r == http::head_parse::malformed) {
        lease.report(pool::outcome::reset);
        log_warn("upstream " + b->name() + " sent a malformed response: " + error);
        co_return failed(502);
      }
    }
    arm(read_timer_, cfg.timeouts.read);
    auto [ec, n] = co_await net::async_read_relay(conn.socket, conn.buffer.prepare(read_chunk), use_tuple);
    disarm(read_timer_);
    if (detached_) {
      end_writer(true);
      co_return result::over;
    }
    if (ec) {
      stale = reused && !got_any && !timed_out_;
      if (stale) {
        log_debug("upstream " + b->name() + " closed a pooled connection (" + ec.message() + ")");
      } else {
        lease.report(timed_out_ ? pool::outcome::timeout : pool::outcome::reset);
        log_warn("upstream " + b->name() +
                 (timed_out_ ? " timed out reading the response head"
                             : " failed reading the response head: " + ec.message()));
      }
      co_return failed(timed_out_ ? 504 : 502);
    }
    conn.buffer.commit(n);
  }

  unsigned status = head.status;
  if (status == 101) {
    lease.report(pool::outcome::reset);
    log_warn("upstream " + b->name() + " switched protocols unasked");
    co_return failed(502);
  }
  bool end = head.framing == http::body_framing::none;
  // The body: chunks (decoded), a length, or until the close.
  const http::body_framing framing = head.framing;
  std::uint64_t left = head.length;
  bool upstream_eof = false;
  http::chunked_decoder chunks;
  std::vector<std::pair<std::string, std::string>> raw_trailers;
  if (framing == http::body_framing::chunked) {
    chunks.reset({.max_trailers = http::response_header_limit});
    chunks.collect_trailers(&raw_trailers);
  }
  lease.report(status >= 500 ? pool::outcome::http_5xx : pool::outcome::success);
  header_list fields;
  fields.reserve(head.fields.size());
  for (const auto& f : head.fields) fields.push_back({std::string(f.name), std::string(f.value)});
  auto headers = to_h2_response(status, fields);
  bool upstream_keep_alive = head.keep_alive;
  conn.buffer.consume(head.size);
  response_started_ = true;
  if (port_) port_->on_response(headers, end);

  // 2. The body, read only as fast as the client takes it.
  if (!end) {
    std::array<char, relay_size> buf;
    for (;;) {
      while (port_ && port_->response_queued() >= response_queue_limit) {
        auto t = params_.send_timeout > 0ms ? params_.send_timeout : std::chrono::milliseconds(24h);
        drain_signal_.expires_after(t);
        auto [wec] = co_await drain_signal_.async_wait(use_tuple);
        if (detached_) {
          end_writer(true);
          co_return result::over;
        }
        if (!wec) {
          log_warn("client too slow taking the response of upstream " + b->name() +
                   ": stream reset");
          end_writer(true);
          fail(504, "client too slow");
          co_return result::over;
        }
      }
      std::size_t got = 0;
      bool done = false;
      const char* in = static_cast<const char*>(conn.buffer.data().data());
      switch (framing) {
        case http::body_framing::chunked:
          if (conn.buffer.size() > 0)
            conn.buffer.consume(
                chunks.decode({in, conn.buffer.size()}, buf.data(), relay_size, got));
          done = chunks.done();
          break;
        case http::body_framing::length:
          got = static_cast<std::size_t>(
              std::min<std::uint64_t>(left, std::min(conn.buffer.size(), relay_size)));
          std::memcpy(buf.data(), in, got);
          conn.buffer.consume(got);
          left -= got;
          done = left == 0;
          break;
        default:  // until the close
          got = std::min(conn.buffer.size(), relay_size);
          std::memcpy(buf.data(), in, got);
          conn.buffer.consume(got);
          done = upstream_eof && conn.buffer.size() == 0;
          break;
      }
      if (chunks.failed()) {
        lease.report(pool::outcome::reset);
        log_warn("upstream " + b->name() + " sent a malformed response body: " +
                 std::string(http::chunked_decoder::describe(chunks.why())));
        end_writer(true);
        fail(502, "malformed upstream response");
        co_return result::over;
      }
      if (got > 0 && port_)
        port_->on_response_data({reinterpret_cast<const std::uint8_t*>(buf.data()), got});
      if (done) break;
      if (conn.buffer.size() == 0 || got == 0) {
        arm(read_timer_, cfg.timeouts.read);
        auto [rec, n] =
            co_await net::async_read_relay(conn.socket, conn.buffer.prepare(read_chunk), use_tuple);
        disarm(read_timer_);
        if (detached_) {
          end_writer(true);
          co_return result::over;
        }
        if (rec == asio::error::eof && framing == http::body_framing::eof) {
          upstream_eof = true;
          continue;
        }
        if (rec) {
          lease.report(timed_out_ ? pool::outcome::timeout : pool::outcome::reset);
          log_warn("upstream " + b->name() +
                   (timed_out_ ? " timed out in the response body"
                               : " failed in the response body: " + rec.message()));
          end_writer(true);
          fail(timed_out_ ? 504 : 502, "upstream failed in the response body");
          co_return result::over;
        }
        conn.buffer.commit(n);
      }
    }
  }

  // 3. Chunked trailers.
  header_list trailers;
  if (!raw_trailers.empty()) {
    header_list raw;
    raw.reserve(raw_trailers.size());
    for (auto& [name, value] : raw_trailers) raw.push_back({std::move(name), std::move(value)});
    trailers = to_h2_trailers(raw);
  }
  response_done_ = true;
  bool reusable = upstream_keep_alive && conn.buffer.size() == 0 && !timed_out_;
  end_writer(!reusable);
  if (port_) {
    port_->on_response_end(trailers.empty() ? nullptr : &trailers);
    acknowledge(received_);  // a body the upstream did not wait for is dropped
  }
  co_return result::done;
}

}  // namespace sluice::h2
