// The HTTP/1.1 reverse-proxy session (the class is in session_impl.hpp; its members for
// HTTP/2 clusters are in session_h2.cpp), and the worker's entry points into it.
#include "session_impl.hpp"

namespace sluice::http {

namespace session_detail {

template <class Stream>
void session<Stream>::detach() {
  attached_ = false;
  worker_->unlink(this);
  if (!parked_) worker_->closed(listener_->index, !handed_off_);
  listener_.reset();  // no configuration kept alive by an idle server
  rec_.reset();
  up_.reset();
  req_head_.reset();
  head_in_.reset();
  relay_.reset();
  req_relay_.reset();
  trim_read_buffer(down_buf_);
}

template <class Stream>
void session<Stream>::refresh_listener() {
  const auto& cur = current_listener(listener_->index);
  if (!cur || cur == listener_) return;
  listener_ = cur;
  limits_ = &listener_->cfg->limits;
  timeouts_ = &listener_->cfg->timeouts;
  set_min_timeout();
}

template <class Stream>
asio::awaitable<void> session<Stream>::serve_connection(bool first) {
  bool serve = true;
  if constexpr (tls) serve = co_await handshake();
  while (serve) {
    if (!co_await read_head(first)) break;
    first = false;
    bool keep = co_await handle();
    write_access_log();
    record_metrics();  // direct answers; proxied requests recorded themselves in proxy()
    if (!keep) break;
    refresh_listener();
  }
  if constexpr (!tls) {
    if (parked_) {
      // Idle: the connection waits for its next request without this session.
      up_.reset();
      auto client = rec_->client;
      // After a wait in the session (busy), what is left of the idle timeout.
      auto idle = timeouts_->idle;
      if (idle > 0ms && deadline_ != steady::time_point::max()) {
        idle = std::max<std::chrono::milliseconds>(
            1ms, std::chrono::ceil<std::chrono::milliseconds>(deadline_ - core::coarse_now()));
      }
      worker_->park(std::move(rec_), std::move(down_), listener_, client, requests_, false, idle);
      co_return;
    }
  }
  if constexpr (tls) {
    if (handshake_done_ && !handed_off_) co_await close_notify();
  }
  closed_ = true;
  error_code ec;
  raw(down_).shutdown(tcp::socket::shutdown_send, ec);
  raw(down_).close(ec);
  up_.reset();
}

template <class Stream>
asio::awaitable<bool> session<Stream>::handshake() {
  if constexpr (tls) {
    set_deadline(listener_->tls->handshake_timeout());
    auto [ec] = co_await down_.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (ec) {
      log_handshake_failure(client_ip_, timed_out(ec), ec);
      co_return false;
    }
    handshake_done_ = true;
    if (net::negotiated_alpn(down_.native_handle()) == "h2") {
      handed_off_ = true;
      h2::start_server_session(std::move(down_), {}, listener_, worker_->index_, h2_observers());
      co_return false;
    }
  }
  co_return true;
}

template <class Stream>
asio::awaitable<bool> session<Stream>::read_head(bool first) {
  reset_request_log();
  // The first request must arrive within the header timeout; later ones get the keep-alive
  // idle timeout until their first byte, then the header timeout for the rest of the head.
  set_deadline(first ? timeouts_->header : timeouts_->idle);
  bool header_deadline = first;
  for (;;) {
    if (down_buf_.size() > 0) {
      auto view =
          std::string_view(static_cast<const char*>(down_buf_.data().data()), down_buf_.size());
      if (!tls && first && h2::looks_like_preface(view)) {
        // HTTP/2 with prior knowledge (h2c) on the same port: the h2 module takes the socket.
        handed_off_ = true;
        h2::start_server_session(std::move(down_), view, listener_, worker_->index_,
                                 h2_observers());
        co_return false;
      }
      auto r = !tls && first && h2::could_be_preface(view)
                   ? request_verdict{}
                   : parse_request_head(view, *limits_, req_head_);
      if (r.what == head_parse::done) {
        // The head's bytes move out of the read buffer (which body reads reuse), and the
        // parsed views with them.
        req_raw_.assign(view.data(), req_head_.size);
        req_head_.rebase(view.data(), req_raw_.data());
        down_buf_.consume(req_head_.size);
        bytes_in_ = req_head_.size;
        target_ = req_head_.target_parts;
        if (req_head_.framing == body_framing::chunked)
          chunks_.reset({.max_trailers = limits_->max_header_bytes, .max_body = limits_->max_body});
        co_return true;
      }
      if (r.what == head_parse::malformed) {
        log_bad_request(client_ip_, r.status, r.reason);
        mark_start();
        co_await send_simple(r.status, false);
        co_return false;
      }
      if (!header_deadline) {
        header_deadline = true;
        set_deadline(timeouts_->header);
      }
    }
    // While draining, a kept-alive connection is not closed here: its client may be sending
    // the next request right now. The drain sweep closes it once it stays idle; a request
    // that does come is answered with `Connection: close`.
    idle_ = down_buf_.size() == 0;
    if constexpr (!tls) {
      if (idle_) {
        if (!busy_ || worker_->stopped_) {  // nothing buffered: park (see serve_connection)
          parked_ = true;
          co_return false;
        }
        // Busy: wait here; the deadline scan parks the connection after park_grace.
        // (The scan runs at least every 100 ms while sessions are live.)
        park_at_ = core::coarse_now() + park_grace;
      }
    }
    awaiting_first_ = first;
    if constexpr (tls) {
      // TLS (a cleartext connection parks instead): the buffer is freed while the connection
      // idles, and the read takes whatever the engine decrypted (a whole record).
      if (idle_ && down_buf_.capacity() > idle_read) down_buf_.shrink_to_fit();  // frees it
    }
    auto [ec, n] = co_await read_some(down_, down_buf_.prepare(read_chunk), use_tuple);
    idle_ = false;
    drain_marks_ = 0;
    if constexpr (!tls) {
      park_at_ = steady::time_point::max();
      if (std::exchange(park_requested_, false) && ec == asio::error::operation_aborted &&
          !timed_out_ && !drain_closed_) {
        busy_ = false;
        parked_ = true;
        co_return false;
      }
    }
    if (ec) {
      if (timed_out(ec) && down_buf_.size() > 0) {
        mark_start();
        co_await send_simple(408, false);
      }
      co_return false;
    }
    if (drain_closed_) co_return false;
    down_buf_.commit(n);
  }
}

template <class Stream>
asio::awaitable<bool> session<Stream>::handle() {
  const auto& req = req_head_;
  ++requests_;
  mark_start();
  has_request_ = true;
  keep_alive_ = req.keep_alive && requests_ < limits_->max_keepalive_requests;
  switch (req.framing) {
    case body_framing::length:
      body_ = body_kind::length;
      body_length_ = req.length;
      bytes_in_ += body_length_;
      break;
    case body_framing::chunked:
      body_ = body_kind::chunked;
      break;
    default:
      body_ = body_kind::none;
      break;
  }
  body_in_memory_ =
      body_ == body_kind::none || (body_ == body_kind::length && down_buf_.size() >= body_length_);
  body_complete_ = body_in_memory_;

  std::string_view host = target_.form == target_form::absolute ? target_.authority : req.host;
  // OPTIONS * asks about the server as a whole: it goes where the host's "/" goes.
  std::string_view path = target_.form == target_form::asterisk ? "/"sv : target_.path;
  int idx = listener_->routes ? listener_->routes->match(host, path) : -1;
  if (idx >= 0 && static_cast<std::size_t>(idx) < listener_->route_metrics.size())
    metrics_route_ = listener_->route_metrics[static_cast<std::size_t>(idx)];
  if (idx < 0) {
    skip_request_body();
    co_await send_simple(404, keep_alive_);
    co_return keep_alive_;
  }
  const auto& route = listener_->cfg->routes[static_cast<std::size_t>(idx)];
  if (route.direct) {
    skip_request_body();
    co_await send_direct(*route.direct);
    co_return keep_alive_;
  }
  int ci = static_cast<std::size_t>(idx) < listener_->route_cluster.size()
               ? listener_->route_cluster[static_cast<std::size_t>(idx)]
               : -1;
  if (ci < 0 || static_cast<std::size_t>(ci) >= listener_->clusters.size()) {
    skip_request_body();
    co_await send_simple(500, keep_alive_);
    co_return keep_alive_;
  }
  auto& cl = *listener_->clusters[static_cast<std::size_t>(ci)];
  metrics_cluster_ = static_cast<int>(cl.metrics_slot());
  if (cl.config().protocol != config::upstream_protocol::http1)
    co_return co_await proxy_to_h2(*this, cl.cache(worker_->index_));
  co_return co_await proxy(cl.cache(worker_->index_));
}

template <class Stream>
void session<Stream>::skip_request_body() {
  if (body_ == body_kind::none) return;
  if (body_in_memory_) {
    down_buf_.consume(body_length_);
    return;
  }
  keep_alive_ = false;
}

template <class Stream>
core::backend* session<Stream>::next_backend(attempts& a, const pool::snapshot& snap) {
  if (a.n >= a.max) return nullptr;
  a.ctx.exclude = std::span<core::backend* const>(a.tried.data(), a.n);
  core::backend* b = snap.pick(a.ctx);
  if (!b) return nullptr;
  if (a.n > 0 && worker_->metrics_) worker_->metrics_->on_retry(metrics_cluster_);
  a.tried[a.n++] = b;
  upstream_addr_ = b->name();
  return b;
}

template <class Stream>
asio::awaitable<std::shared_ptr<upstream_conn>> session<Stream>::connect_upstream(
    core::backend* b, const config::cluster& ccfg, pool::lease& lease, unsigned& fail_status) {
  auto conn = std::make_shared<upstream_conn>(down_.get_executor());
  conn->backend = b;
  up_ = conn;
  set_deadline(ccfg.timeouts.connect);
  auto [ec] = co_await conn->socket.async_connect(endpoint_of(b->addr()), use_tuple);
  if (ec) {
    up_.reset();
    upstream_connect_failed(*b, ccfg, lease, timed_out(ec), &ec, fail_status);
    co_return nullptr;
  }
  set_upstream_options(conn->socket);
  co_return conn;
}

template <class Stream>
asio::awaitable<bool> session<Stream>::no_answer(const attempts& a, const config::cluster& ccfg,
                                                 unsigned fail_status) {
  if (a.n == 0) {
    log_no_backend(ccfg.name);
    skip_request_body();
    co_await send_simple(503, keep_alive_);
    co_return keep_alive_;
  }
  co_return co_await fail(fail_status ? fail_status : 502);
}

template <class Stream>
asio::awaitable<bool> session<Stream>::proxy(pool::snapshot_cache& cache) {
  auto snap = cache.hold();
  // Recorded on every way out, while `snap` still keeps the answering backend alive.
  struct record_on_exit {
    session* s;
    ~record_on_exit() { s->record_metrics(); }
  } record{this};
  const auto& ccfg = cache.owner().config();
  build_upstream_head();

  attempts tries;
  start_attempts(tries, ccfg);
  bool idempotent = is_idempotent(req_head_.method);
  unsigned fail_status = 0;
  body_streamed_ = false;

  while (core::backend* b = next_backend(tries, *snap)) {
    pool::lease lease(*b);
    bool fresh_only = false;
    for (;;) {  // at most twice: a stale pooled connection, then a fresh one
      b->stats().requests.fetch_add(1, std::memory_order_relaxed);
      auto up_start = steady::now();
      std::shared_ptr<upstream_conn> conn = fresh_only ? nullptr : worker_->pool_.take(b);
      bool reused = conn != nullptr;
      if (!conn) {
        conn = co_await connect_upstream(b, ccfg, lease, fail_status);
        if (!conn) break;  // next backend
      }
      up_ = conn;
      bool stale = false;
      auto r = co_await exchange(*conn, ccfg, lease, reused, stale, fail_status);
      upstream_seconds_ = std::chrono::duration<double>(steady::now() - up_start).count();
      if (r != attempt::failed) answered_ = b;
      if (r == attempt::done) {
        if (reuse_upstream_) {
          conn->keep = snap;
          up_.reset();
          // The answer's last read emptied the socket: from then on any epoll event on it
          // means the upstream closed it (upstream_pool::take checks).
          const bool quiet = up_left_ == net::queued::nothing;
          worker_->pool_.put(std::move(conn), ccfg.pool.max_idle, ccfg.pool.idle_timeout, quiet);
        }
        up_.reset();
        if (body_in_memory_ && body_ == body_kind::length) down_buf_.consume(body_length_);
        co_return keep_alive_;
      }
      up_.reset();
      if (r == attempt::close) co_return false;
      // Failed before any response byte reached the client.
      bool replayable = body_in_memory_ && !body_streamed_ && idempotent;
      if (stale && replayable && !fresh_only) {
        fresh_only = true;  // the pooled connection was closed under us: same backend, fresh
        continue;
      }
      if (!replayable) {
        co_await fail(fail_status ? fail_status : 502);
        co_return false;
      }
      break;  // next backend
    }
  }
  co_return co_await no_answer(tries, ccfg, fail_status);
}

template <class Stream>
std::uint64_t session<Stream>::request_hash(const config::hash_on& h) {
  switch (h.what) {
    case config::hash_on::kind::client_ip:
      return balance::hash_key(client_ip_);
    case config::hash_on::kind::header:
      return balance::hash_key(req_head_.find(h.name));
    case config::hash_on::kind::cookie: {
      for (const auto& f : req_head_.fields) {
        if (f.name.size() != 6 || !beast::iequals(f.name, "cookie")) continue;
        auto v = find_cookie(f.value, h.name);
        if (!v.empty()) return balance::hash_key(v);
      }
      return balance::hash_key(client_ip_);
    }
  }
  return 0;
}

template <class Stream>
void session<Stream>::build_upstream_head() {
  const auto& req = req_head_;
  auto& h = up_head_;
  h.clear();
  h += req.method;
  h += ' ';
  h += target_.form == target_form::absolute ? target_.origin : req.target;
  h += " HTTP/1.1\r\n"sv;

  xff_.clear();
  fwd_.clear();
  bool forwarded = listener_->cfg->forwarded;
  bool absolute = target_.form == target_form::absolute;
  upgrade_ = req.upgrade;
  using kind = head_field::kind;
  // End-to-end lines are copied as the client sent them; X-Forwarded-For and (when the
  // listener adds its own) Forwarded are gathered to be appended to.
  append_field_lines(h, req_raw_, req.fields, [&](const head_field& f) {
    switch (f.what) {
      case kind::underscored:
        if (limits_->underscores != config::listener_limits::underscore_action::allow) return false;
        [[fallthrough]];
      case kind::end_to_end:
        return !req.connection_names_fields || !named_by_connection(req.fields, f.name);
      case kind::host:
        return !absolute;
      case kind::forwarded:
        if (!forwarded) return true;
        if (!fwd_.empty()) fwd_ += ", "sv;
        fwd_ += f.value;
        return false;
      case kind::x_forwarded_for:
        if (!xff_.empty()) xff_ += ", "sv;
        xff_ += f.value;
        return false;
      default:
        return false;  // hop-by-hop, re-framed, answered or set by the proxy
    }
  });
  std::string_view host = req.host;
  if (absolute) {
    host = target_.authority;
    h += "Host: "sv;
    h += host;
    h += "\r\n"sv;
  }
  h += "X-Forwarded-For: "sv;
  if (!xff_.empty()) {
    h += xff_;
    h += ", "sv;
  }
  h += client_ip_;
  h += tls ? "\r\nX-Forwarded-Proto: https\r\n"sv : "\r\nX-Forwarded-Proto: http\r\n"sv;
  if (!host.empty()) {
    h += "X-Forwarded-Host: "sv;
    h += host;
    h += "\r\n"sv;
  }
  if (forwarded) {
    h += "Forwarded: "sv;
    if (!fwd_.empty()) {
      h += fwd_;
      h += ", "sv;
    }
    append_forwarded_element(h, client_ip_, host, tls ? "https" : "http");
    h += "\r\n"sv;
  }
  if (upgrade_) {
    h += "Connection: upgrade\r\nUpgrade: "sv;
    h += req.upgrade_value;
    h += "\r\n"sv;
  }
  switch (body_) {
    case body_kind::none:
      if (req.has_content_length) h += "Content-Length: 0\r\n"sv;
      break;
    case body_kind::length:
      h += "Content-Length: "sv;
      append_number(h, body_length_);
      h += "\r\n"sv;
      break;
    case body_kind::chunked:
      h += "Transfer-Encoding: chunked\r\n"sv;
      break;
  }
  h += "\r\n"sv;
  expect_continue_ = body_ != body_kind::none && !body_in_memory_ && req.version == 11 &&
                     beast::iequals(req.expect, "100-continue");
}

template <class Stream>
asio::awaitable<attempt> session<Stream>::exchange(upstream_conn& conn, const config::cluster& ccfg,
                                                   pool::lease& lease, bool reused, bool& stale,
                                                   unsigned& fail_status) {
  auto* b = conn.backend;
  reuse_upstream_ = false;
  cancelled_by_body_ = false;
  cancelled_by_response_ = false;
  // 1. Head, plus the body when it is already in memory, in one write.
  set_deadline(ccfg.timeouts.write);
  {
    std::size_t body_now = body_in_memory_ && body_ == body_kind::length ? body_length_ : 0;
    // One buffer is one send(2); a gathered write is a sendmsg(2), which costs the kernel
    // more (the iovec and message header are copied in and checked).
    // A head alone is written straight away when the socket takes it all (the usual case):
    // the coroutine goes on without a trip through the scheduler.
    // With batched sends the head waits for the turn's flush instead (one enter for all).
    std::size_t sent =
        body_now == 0 && !net::sends_batched(conn.socket) ? send_now(conn.socket, up_head_) : 0;
    if (sent < up_head_.size() + body_now) {
      auto head = asio::buffer(up_head_.data() + sent, up_head_.size() - sent);
      auto [ec, n] = body_now == 0 ? co_await write_all(conn.socket, head)
                                   : co_await write_all(
                                         conn.socket,
                                         std::array<asio::const_buffer, 2>{
                                             head, asio::buffer(down_buf_.data().data(), body_now)});
      if (ec) {
        stale = reused && sent == 0 && !timed_out(ec);
        co_return upstream_failed(stale ? nullptr : &lease, b, ec, "writing the request",
                                  fail_status);
      }
    }
  }
  if (body_in_memory_) {
    body_complete_ = true;
    body_done_ = true;
    // receive()'s clean-up concerns a streamed body only: one coroutine frame less.
    co_return co_await receive_response(conn, ccfg, lease, reused, stale, fail_status);
  }
  // 2. A streamed body, relayed while the response is read: an upstream may answer (and a
  // streaming one like an echo service must) before the whole body is in.
  body_streamed_ = true;
  if (expect_continue_) {
    set_deadline(timeouts_->send);
    static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [ec, n] = co_await write_all(down_, asio::buffer(cont));
    if (ec) co_return attempt::close;
  }
  body_done_ = false;
  body_status_ = 0;
  body_up_failed_ = false;
  cancelled_by_body_ = false;
  cancelled_by_response_ = false;
  response_started_ = false;
  {
    using namespace asio::experimental::awaitable_operators;
    auto [unused, r] =
        co_await (send_body(conn, ccfg) && receive(conn, ccfg, lease, reused, stale, fail_status));
    stale = false;            // a streamed body cannot be replayed anyway
    if (body_status_ != 0) {  // the client failed: timeout, bad chunk, too large, gone
      if (!response_started_ && body_status_ >= 400) co_await send_simple(body_status_, false);
      co_return attempt::close;
    }
    if (r == attempt::failed && body_up_failed_ && fail_status == 0) fail_status = 502;
    co_return r;
  }
}

template <class Stream>
asio::awaitable<int> session<Stream>::send_body(upstream_conn& conn, const config::cluster& ccfg) {
  auto r = co_await relay_request_body(conn, ccfg);
  body_done_ = true;
  body_deadline_ = steady::time_point::max();
  if (cancelled_by_response_) co_return 0;
  if (r == relay::client_failed) {
    if (body_status_ == 0) body_status_ = 1;
    cancelled_by_body_ = true;
    error_code ec;
    conn.socket.close(ec);  // closed, not cancelled: the response half may not be waiting yet
  } else if (r == relay::upstream_failed) {
    body_up_failed_ = true;
  }
  co_return 0;
}

template <class Stream>
asio::awaitable<attempt> session<Stream>::receive(upstream_conn& conn, const config::cluster& ccfg,
                                                  pool::lease& lease, bool reused, bool& stale,
                                                  unsigned& fail_status) {
  auto r = co_await receive_response(conn, ccfg, lease, reused, stale, fail_status);
  if (!body_done_) {
    cancelled_by_response_ = true;
    keep_alive_ = false;
    reuse_upstream_ = false;
    error_code ec;
    net::cancel_io(raw(down_), ec);  // the body half checks cancelled_by_response_ before each read
    conn.socket.close(ec);
  }
  if (!body_complete_) {
    keep_alive_ = false;
    reuse_upstream_ = false;
  }
  co_return r;
}

template <class Stream>
asio::awaitable<attempt> session<Stream>::receive_response(upstream_conn& conn,
                                                           const config::cluster& ccfg,
                                                           pool::lease& lease, bool reused,
                                                           bool& stale, unsigned& fail_status) {
  auto* b = conn.backend;
  // 3. The response head (skipping interim 1xx responses).
  bool got_any = false;
  bool head_request = req_head_.is_head();
  set_deadline(ccfg.timeouts.read);
  for (;;) {
    if (conn.buffer.size() > 0) {
      got_any = true;
      auto buffered =
          std::string_view(static_cast<const char*>(conn.buffer.data().data()), conn.buffer.size());
      const char* error = "";
      auto r = parse_response_head(buffered, response_header_limit, head_request, head_in_, &error);
      if (r == head_parse::done) {
        unsigned s = head_in_.status;
        if (s >= 100 && s < 200 && s != 101) {
          conn.buffer.consume(head_in_.size);
          continue;
        }
        break;
      }
      if (r == head_parse::malformed) {
        lease.report(pool::outcome::reset);
        log_upstream(*b, " sent a malformed response: ", error);
        fail_status = 502;
        co_return attempt::failed;
      }
    }
    if (cancelled_by_body_) co_return attempt::close;
    auto [ec, n] =
        co_await read_some(conn.socket, conn.buffer.prepare(read_chunk), use_tuple, &up_left_);
    if (ec) {
      if (cancelled_by_body_) co_return attempt::close;
      stale = reused && !got_any && !timed_out(ec);
      co_return upstream_failed(stale ? nullptr : &lease, b, ec, "reading the response head",
                                fail_status);
    }
    conn.buffer.commit(n);
  }
  unsigned status = head_in_.status;
  std::size_t head_size = head_in_.size;
  if (head_in_.framing == body_framing::chunked)
    res_chunks_.reset({.max_trailers = response_header_limit});
  lease.report(status >= 500 ? pool::outcome::http_5xx : pool::outcome::success);
  status_ = status;

  if (status == 101) {
    if (!upgrade_) {
      log_upstream(*b, " switched protocols unasked");
      fail_status = 502;
      co_return attempt::failed;
    }
    co_await tunnel(conn, head_size);
    co_return attempt::close;
  }
  // A request body we did not read (answered early by the upstream) would be taken for the
  // next request: not possible here, bodies are fully relayed before the response is read.
  co_return co_await relay_response(conn, ccfg, head_size);
}

template <class Stream>
attempt session<Stream>::upstream_failed(pool::lease* lease, core::backend* b, const error_code& ec,
                                         const char* what, unsigned& fail_status) {
  bool to = timed_out(ec);
  fail_status = to ? 504 : 502;
  if (!lease) {
    SLUICE_LOG(debug, "upstream " << b->name() << " closed a pooled connection (" << what << ": "
                                  << ec.message() << ")");
    return attempt::failed;
  }
  lease->report(to ? pool::outcome::timeout : pool::outcome::reset);
  SLUICE_LOG(warn, "upstream " << b->name() << (to ? " timed out " : " failed ") << what
                               << (to ? "" : ": " + ec.message()));
  fail_status = to ? 504 : 502;
  return attempt::failed;
}

template <class Stream>
asio::awaitable<bool> session<Stream>::next_body_piece(std::uint64_t left, body_piece& out,
                                                       bool body_half) {
  out = {};
  if (body_ == body_kind::length) {
    if (left > 0 && down_buf_.size() == 0 &&
        !co_await read_body_bytes(
            static_cast<std::size_t>(std::min<std::uint64_t>(left, relay_size)), body_half))
      co_return false;
    out.data = static_cast<const char*>(down_buf_.data().data());
    out.size = static_cast<std::size_t>(std::min<std::uint64_t>(left, down_buf_.size()));
    out.last = out.size == left;
    co_return true;
  }
  auto& p = chunks_;
  char* buf = request_relay_buffer();
  for (;;) {
    std::size_t got = 0;
    if (down_buf_.size() > 0) {
      auto n = p.decode({static_cast<const char*>(down_buf_.data().data()), down_buf_.size()}, buf,
                        relay_size, got);
      down_buf_.consume(n);
    }
    if (p.failed()) {
      log_bad_body(client_ip_, chunked_decoder::describe(p.why()));
      body_status_ = p.status();
      co_return false;
    }
    if (got > 0 || p.done()) {
      out = {buf, got, p.done()};
      co_return true;
    }
    if (!co_await read_body_bytes(read_chunk, body_half)) co_return false;
  }
}

template <class Stream>
asio::awaitable<bool> session<Stream>::read_body_bytes(std::size_t want, bool body_half) {
  if (body_half && cancelled_by_response_) co_return false;
  if (body_half)
    set_body_deadline(timeouts_->body);
  else
    set_deadline(timeouts_->body);
  auto [ec, n] = co_await read_some(down_, down_buf_.prepare(want), use_tuple);
  if (ec) {
    if (body_half ? body_timed_out(ec) : timed_out(ec)) body_status_ = 408;
    co_return false;
  }
  down_buf_.commit(n);
  co_return true;
}

template <class Stream>
auto session<Stream>::relay_request_body(upstream_conn& conn, const config::cluster& ccfg)
    -> asio::awaitable<relay> {
  const bool chunked = body_ == body_kind::chunked;
  std::uint64_t left = body_length_;
  for (;;) {
    body_piece piece;
    if (!co_await next_body_piece(left, piece, true)) co_return relay::client_failed;
    if (piece.size > 0 || (chunked && piece.last)) {
      const auto size_line =
          chunked && piece.size > 0 ? chunk_size_line(piece.size) : chunk_size_line();
      static constexpr std::string_view crlf = "\r\n";
      static constexpr std::string_view last = "0\r\n\r\n";
      std::array<asio::const_buffer, 4> bufs{
          size_line.buffer(), asio::buffer(piece.data, piece.size),
          asio::buffer(crlf.data(), chunked && piece.size > 0 ? 2 : 0),
          asio::buffer(last.data(), chunked && piece.last ? last.size() : 0)};
      set_body_deadline(ccfg.timeouts.write);
      auto [ec, n] = co_await write_all(conn.socket, bufs);
      if (ec) {
        last_up_ec_ = ec;
        co_return relay::upstream_failed;
      }
    }
    if (!chunked) {
      down_buf_.consume(piece.size);
      left -= piece.size;
    }
    if (piece.last) {
      body_complete_ = true;
      co_return relay::ok;
    }
  }
}

template <class Stream>
asio::awaitable<attempt> session<Stream>::relay_response(upstream_conn& conn,
                                                         const config::cluster& ccfg,
                                                         std::size_t head_size) {
  const auto& in_head = head_in_;
  auto raw = std::string_view(static_cast<const char*>(conn.buffer.data().data()), head_size);
  bool client11 = req_head_.version == 11;

  using framing = body_framing;
  const framing in = in_head.framing;
  const std::uint64_t length = in_head.length;
  // Toward the client: chunked (HTTP/1.1) or close-delimited (HTTP/1.0) when the length is
  // not known up front.
  bool out_chunked = (in == framing::chunked || in == framing::eof) && client11;
  if ((in == framing::chunked || in == framing::eof) && !client11) keep_alive_ = false;
  if (worker_->draining_) keep_alive_ = false;

  auto& h = head_;
  h.clear();
  append_status_line(h, raw, in_head);
  // Content-Length is relayed as-is when there is no body to frame (HEAD, 304): it describes
  // the entity.
  append_end_to_end_fields(h, raw, in_head, in != framing::none);
  if (!in_head.has_date) append_date(h);
  append_response_framing(
      h, in == framing::length ? std::optional<std::uint64_t>(length) : std::nullopt, out_chunked,
      keep_alive_, client11);
  conn.buffer.consume(head_size);
  response_started_ = true;

  bool upstream_ok = false;
  switch (in) {
    case framing::none: {
      set_deadline(timeouts_->send);
      auto [ec, n] = co_await write_all(down_, asio::buffer(h));
      if (ec) co_return attempt::close;
      upstream_ok = true;
      break;
    }
    case framing::length: {
      if (length <= conn.buffer.size()) {
        // The whole body came with the head (the common small response): one write, without
        // the frame of relay_length_response. A small body joins the head, so that the write
        // is one send(2) rather than a gathered sendmsg(2).
        set_deadline(timeouts_->send);
        auto body = static_cast<const char*>(conn.buffer.data().data());
        error_code ec;
        if (length <= small_body) {
          h.append(body, length);
          std::size_t sent = 0;
          if constexpr (!tls) {
            if (!net::sends_batched(down_)) sent = send_now(down_, h);
          }
          if (sent < h.size())
            std::tie(ec, std::ignore) = co_await write_all(
                down_, asio::buffer(h.data() + sent, h.size() - sent));
        } else {
          std::tie(ec, std::ignore) = co_await write_all(
              down_, std::array<asio::const_buffer, 2>{asio::buffer(h), asio::buffer(body, length)});
        }
        if (ec) co_return attempt::close;
        conn.buffer.consume(length);
        bytes_sent_ += length;
        upstream_ok = true;
        break;
      }
      auto r = co_await relay_length_response(conn, ccfg, length);
      if (r == relay::client_failed) co_return attempt::close;
      if (r == relay::upstream_failed && !cancelled_by_body_) {
        log_upstream(*conn.backend, " failed in the response body: ", &last_up_ec_);
        co_return attempt::close;
      }
      upstream_ok = true;
      break;
    }
    case framing::chunked:
    case framing::eof: {
      auto r =
          co_await relay_unknown_length_response(conn, ccfg, in == framing::chunked, out_chunked);
      if (r == relay::client_failed) co_return attempt::close;
      if (r == relay::upstream_failed && !cancelled_by_body_) {
        log_upstream(*conn.backend, " failed in the response body: ", &last_up_ec_);
        co_return attempt::close;
      }
      upstream_ok = in == framing::chunked;
      break;
    }
  }
  // Anything queued behind the answer (bytes, or the upstream's FIN) means the connection
  // cannot serve another request. A FIN that came with the answer brings no epoll event of
  // its own, so the pool could not notice it before the next request.
  reuse_upstream_ = upstream_ok && in_head.keep_alive && conn.buffer.size() == 0 &&
                    up_left_ != net::queued::more && !upgrade_ && !worker_->draining_;
  co_return attempt::done;
}

template <class Stream>
auto session<Stream>::relay_length_response(upstream_conn& conn, const config::cluster& ccfg,
                                            std::uint64_t length) -> asio::awaitable<relay> {
  // First write: the head plus whatever body bytes came with it.
  std::uint64_t left = length;
  auto first = static_cast<std::size_t>(std::min<std::uint64_t>(left, conn.buffer.size()));
  {
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head_),
                                           asio::buffer(conn.buffer.data().data(), first)};
    set_deadline(timeouts_->send);
    auto [ec, n] = co_await write_all(down_, bufs);
    if (ec) co_return relay::client_failed;
    conn.buffer.consume(first);
    left -= first;
    bytes_sent_ += first;
  }
  while (left > 0) {
    set_deadline(ccfg.timeouts.read);
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, relay_size));
    auto [ec, n] = co_await read_some(conn.socket, conn.buffer.prepare(want), use_tuple, &up_left_);
    if (ec) {
      last_up_ec_ = ec;
      co_return relay::upstream_failed;
    }
    conn.buffer.commit(n);
    set_deadline(timeouts_->send);
    auto [wec, wn] = co_await write_all(down_, conn.buffer.data());
    if (wec) co_return relay::client_failed;
    conn.buffer.consume(n);
    left -= n;
    bytes_sent_ += n;
  }
  co_return relay::ok;
}

template <class Stream>
auto session<Stream>::relay_unknown_length_response(upstream_conn& conn,
                                                    const config::cluster& ccfg, bool chunked,
                                                    bool out_chunked) -> asio::awaitable<relay> {
  auto& rp = res_chunks_;
  char* buf = relay_buffer();
  bool head_pending = true;
  bool eof = false;
  for (;;) {
    std::size_t got = 0;
    bool done = false;
    if (chunked) {
      if (conn.buffer.size() > 0) {
        auto n =
            rp.decode({static_cast<const char*>(conn.buffer.data().data()), conn.buffer.size()},
                      buf, relay_size, got);
        conn.buffer.consume(n);
      }
      if (rp.failed()) {  // logged by the caller ("failed in the response body")
        last_up_ec_ = beast::http::error::bad_chunk;
        co_return relay::upstream_failed;
      }
      done = rp.done();
    } else {
      got = std::min(conn.buffer.size(), relay_size);
      std::memcpy(buf, conn.buffer.data().data(), got);
      conn.buffer.consume(got);
      done = eof && conn.buffer.size() == 0;
    }
    if (got > 0 || done || head_pending) {
      const auto size_line = out_chunked && got > 0 ? chunk_size_line(got) : chunk_size_line();
      static constexpr std::string_view crlf = "\r\n";
      static constexpr std::string_view last = "0\r\n\r\n";
      std::array<asio::const_buffer, 5> bufs{
          asio::buffer(head_.data(), head_pending ? head_.size() : 0), size_line.buffer(),
          asio::buffer(buf, got), asio::buffer(crlf.data(), out_chunked && got > 0 ? 2 : 0),
          asio::buffer(last.data(), out_chunked && done ? last.size() : 0)};
      set_deadline(timeouts_->send);
      auto [wec, wn] = co_await write_all(down_, bufs);
      if (wec) co_return relay::client_failed;
      head_pending = false;
      bytes_sent_ += got;
    }
    if (done) co_return relay::ok;
    if (conn.buffer.size() == 0 || (chunked && got == 0)) {
      set_deadline(ccfg.timeouts.read);
      auto [ec, n] =
          co_await read_some(conn.socket, conn.buffer.prepare(relay_size), use_tuple, &up_left_);
      if (ec == asio::error::eof && !chunked) {
        eof = true;
        continue;
      }
      if (ec) {
        last_up_ec_ = ec;
        co_return relay::upstream_failed;
      }
      conn.buffer.commit(n);
    }
  }
}

template <class Stream>
asio::awaitable<void> session<Stream>::tunnel(upstream_conn& conn, std::size_t head_size) {
  using namespace asio::experimental::awaitable_operators;
  keep_alive_ = false;
  auto raw = std::string_view(static_cast<const char*>(conn.buffer.data().data()), head_size);
  auto& h = head_;
  h.clear();
  append_status_line(h, raw, head_in_);
  append_end_to_end_fields(h, raw, head_in_, true);
  h += "Connection: upgrade\r\nUpgrade: "sv;
  h += head_in_.upgrade;
  h += "\r\n\r\n"sv;
  conn.buffer.consume(head_size);
  response_started_ = true;
  set_deadline(timeouts_->send);
  std::array<asio::const_buffer, 2> bufs{asio::buffer(h), conn.buffer.data()};
  auto [ec, n] = co_await write_all(down_, bufs);
  if (ec) co_return;
  conn.buffer.consume(conn.buffer.size());
  if (down_buf_.size() > 0) {
    auto [wec, wn] = co_await write_all(conn.socket, down_buf_.data());
    if (wec) co_return;
    down_buf_.consume(down_buf_.size());
  }
  set_deadline(timeouts_->idle);
  char* buf = relay_buffer();
  co_await (pump(down_, conn.socket, buf, relay_size / 2) &&
            pump(conn.socket, down_, buf + relay_size / 2, relay_size / 2));
}

template <class Stream>
asio::awaitable<void> session<Stream>::send_simple(unsigned status, bool keep_alive) {
  keep_alive_ = keep_alive && !worker_->draining_;
  status_ = status;
  auto& h = head_;
  h.clear();
  h += "HTTP/1.1 "sv;
  append_number(h, status);
  h += ' ';
  auto text = reason_phrase(status);
  h += text;
  h += "\r\nServer: sluice\r\n"sv;
  append_date(h);
  h += "Content-Type: text/plain\r\n"sv;
  if (status == 405) h += "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n"sv;
  h += "Content-Length: "sv;
  append_number(h, text.size() + 5);
  h += keep_alive_ ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  append_number(h, status);
  h += ' ';
  h += text;
  h += '\n';
  bytes_sent_ = text.size() + 5;
  set_deadline(timeouts_->send);
  auto [ec, n] = co_await write_all(down_, asio::buffer(h));
  if (ec) keep_alive_ = false;
}

template <class Stream>
asio::awaitable<void> session<Stream>::send_direct(const config::direct_response& d) {
  if (worker_->draining_) keep_alive_ = false;
  status_ = d.status;
  auto& h = head_;
  h.clear();
  h += "HTTP/1.1 "sv;
  append_number(h, d.status);
  h += ' ';
  h += reason_phrase(d.status);
  h += "\r\n"sv;
  append_date(h);
  bool no_body = d.status < 200 || d.status == 204 || d.status == 304;
  if (!no_body) {
    if (!d.content_type.empty()) {
      h += "Content-Type: "sv;
      h += d.content_type;
      h += "\r\n"sv;
    }
    h += "Content-Length: "sv;
    append_number(h, d.body.size());
    h += "\r\n"sv;
  }
  if (!keep_alive_)
    h += "Connection: close\r\n"sv;
  else if (req_head_.version == 10)
    h += "Connection: keep-alive\r\n"sv;
  h += "\r\n"sv;
  bool send_body = !no_body && !req_head_.is_head();
  bytes_sent_ = send_body ? d.body.size() : 0;
  std::array<asio::const_buffer, 2> bufs{
      asio::buffer(h), asio::buffer(d.body.data(), send_body ? d.body.size() : 0)};
  set_deadline(timeouts_->send);
  auto [ec, n] = co_await write_all(down_, bufs);
  if (ec) keep_alive_ = false;
}

template <class Stream>
void session<Stream>::reset_request_state() {
  target_ = {};
  keep_alive_ = false;
  body_ = body_kind::none;
  body_length_ = 0;
  body_in_memory_ = false;
  body_streamed_ = false;
  expect_continue_ = false;
  upgrade_ = false;
  reuse_upstream_ = false;
  last_up_ec_ = {};
  body_complete_ = false;
  body_done_ = false;
  body_status_ = 0;
  body_up_failed_ = false;
  cancelled_by_body_ = false;
  cancelled_by_response_ = false;
  response_started_ = false;
  log_time_ = {};
  start_ = {};
  reset_request_log();
}

template <class Stream>
void session<Stream>::reset_request_log() {
  metrics_cluster_ = -1;
  metrics_route_ = metrics::no_slot;
  answered_ = nullptr;
  recorded_ = false;
  bytes_in_ = 0;
  status_ = 0;
  bytes_sent_ = 0;
  upstream_addr_.clear();
  upstream_seconds_ = -1;
  has_request_ = false;
}

template <class Stream>
void session<Stream>::record_metrics() {
  if (recorded_ || !worker_->metrics_ || status_ == 0) return;
  recorded_ = true;
  const auto up = upstream_seconds_ >= 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::duration<double>(upstream_seconds_))
                                         : std::chrono::nanoseconds{0};
  worker_->metrics_->on_request(listener_->index, metrics_cluster_, answered_, status_,
                                finish_time() - start_, up, bytes_in_, bytes_sent_, metrics_route_);
}

template <class Stream>
void session<Stream>::write_access_log() {
  if (!worker_->access_.enabled() || status_ == 0) return;
  log::access_entry e;
  e.client_ip = client_ip_;
  // Zero when the access log was switched on (a reload) while this request was under way.
  e.time = log_time_ != std::chrono::system_clock::time_point{}
               ? log_time_
               : std::chrono::system_clock::now() -
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(finish_time() -
                                                                                     start_);
  if (has_request_) {
    const auto& req = req_head_;
    e.method = req.method;
    e.target = req.target;
    e.version = req.version;
    e.referer = req.find("referer");
    e.user_agent = req.find("user-agent");
  }
  e.status = status_;
  e.body_bytes_sent = bytes_sent_;
  e.upstream_addr = upstream_addr_;
  e.upstream_seconds = upstream_seconds_;
  e.request_seconds = std::chrono::duration<double>(finish_time() - start_).count();
  worker_->access_.append(e);
}

// Both downstream flavours, compiled here once.
template class session<tcp::socket>;
template class session<tls_stream>;

}  // namespace session_detail

using namespace session_detail;

// ---------------------------------------------------------------------------------------------

std::shared_ptr<worker_state> make_worker_state(asio::io_context& io,
                                                std::shared_ptr<log::access_log> access_log,
                                                std::shared_ptr<metrics::registry> metrics,
                                                unsigned worker_index) {
  auto w =
      std::make_shared<worker_state>(io, std::move(access_log), std::move(metrics), worker_index);
  w->start_tick();
  return w;
}

namespace {
// Per worker thread: the newest state of each listener, by metrics slot.
thread_local std::vector<std::shared_ptr<const listener_state>> tl_listeners;
}  // namespace

const std::shared_ptr<const listener_state>& current_listener(std::size_t slot) noexcept {
  static const std::shared_ptr<const listener_state> none;
  return slot < tl_listeners.size() ? tl_listeners[slot] : none;
}

void publish_listener(std::size_t slot, std::shared_ptr<const listener_state> state) {
  if (slot >= tl_listeners.size()) tl_listeners.resize(slot + 1);
  tl_listeners[slot] = std::move(state);
}

std::shared_ptr<listener_state> make_listener_state(
    std::shared_ptr<const config::config> cfg, const config::listener& l, std::size_t slot,
    const std::vector<std::shared_ptr<pool::cluster>>& clusters) {
  auto st = std::make_shared<listener_state>();
  st->config = std::move(cfg);
  st->cfg = &l;
  st->index = slot;
  st->routes = std::make_shared<const router>(l.routes);
  for (const auto& r : l.routes) {
    int ci = -1;
    if (!r.direct) {
      for (std::size_t i = 0; i < st->clusters.size() && ci < 0; ++i)
        if (st->clusters[i]->name() == r.cluster) ci = static_cast<int>(i);
      for (std::size_t i = 0; i < clusters.size() && ci < 0; ++i)
        if (clusters[i]->name() == r.cluster) {
          ci = static_cast<int>(st->clusters.size());
          st->clusters.push_back(clusters[i]);
          const auto& t = clusters[i]->config().timeouts;
          st->min_cluster_timeout = positive_min(
              st->min_cluster_timeout, positive_min(t.connect, positive_min(t.read, t.write)));
        }
    }
    st->route_cluster.push_back(ci);
  }
  return st;
}

void start_session(tcp::socket socket, std::shared_ptr<const listener_state> listener,
                   const std::shared_ptr<worker_state>& worker) {
  if (!listener || !listener->cfg) return;
  worker->opened(listener->index);
  if (listener->tls) {
    tls_stream stream(std::move(socket), listener->tls->context());
    auto s = std::make_shared<session<tls_stream>>(std::move(stream), std::move(listener), worker);
    s->start();
    return;
  }
  // Cleartext: parked until its first bytes arrive (a client that connects and sends nothing
  // costs no session), under the header timeout. TCP_NODELAY comes from the listening socket.
  error_code ec;
  // For the follow-up read after a full parked read; async operations ignore it. The runtime's
  // acceptor hands sockets over non-blocking already (accept4): no ioctl then.
  if (!socket.non_blocking()) socket.non_blocking(true, ec);
  auto client = packed_address::peer_of(socket);
  auto header = listener->cfg->timeouts.header;
  worker->park(nullptr, std::move(socket), std::move(listener), client, 0, true, header);
}

void resume_parked(std::unique_ptr<parked_conn> p, const error_code& ec, std::size_t n) {
  auto* w = p->worker;
  if (!w) return;  // the worker is gone (shutdown): the socket closes with p
  w->unpark(p.get());
  // Bytes that arrived just as the timeout or the drain closed the connection (the read had
  // completed already) are served all the same: a request is not dropped (while draining, its
  // answer says Connection: close).
  if (ec || n == 0) {
    // The client closed (or reset) its idle connection, or the idle (header) timeout or the
    // drain closed it.
    error_code ignored;
    p->socket.shutdown(tcp::socket::shutdown_send, ignored);
    p->socket.close(ignored);
    w->closed(p->listener->index);
    return;
  }
  // An idle server takes it (see session::serve), or a new one.
  p->got = static_cast<std::uint8_t>(n);
  if (w->idle_servers_ > 0) {
    --w->idle_servers_;
    w->ready_.push_back(std::move(p));
    w->server_wake_.cancel_one();
    return;
  }
  using plain = session<tcp::socket>;
  auto s = std::allocate_shared<plain>(field_allocator<plain>{}, plain::server_tag{},
                                       w->shared_from_this());
  s->attach(std::move(p));
  asio::co_spawn(w->io_.get_executor(), s->serve(s), asio::detached);
}

void drain(worker_state& worker) { worker.drain(); }

std::size_t active_sessions(const worker_state& worker) noexcept {
  return worker.active_.load(std::memory_order_relaxed);
}

}  // namespace sluice::http
