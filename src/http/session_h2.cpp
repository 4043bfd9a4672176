// The session's members for HTTP/1.1 requests to HTTP/2 clusters (h2c, h2): each request is
// one stream on an HTTP/2 connection of the worker's h2 pool (see session_impl.hpp).
#include "session_impl.hpp"

namespace sluice::http::session_detail {

template <class Stream>
void session<Stream>::build_h2_request(bool https) {
  const auto& req = req_head_;
  auto& out = h2_req_;
  out.clear();
  bool absolute = target_.form == target_form::absolute;
  std::string_view host = absolute ? target_.authority : req.host;
  out.push_back({":method", std::string(req.method)});
  out.push_back({":scheme", https ? "https" : "http"});
  if (!host.empty()) out.push_back({":authority", std::string(host)});
  out.push_back({":path", std::string(absolute ? target_.origin : req.target)});
  xff_.clear();
  fwd_.clear();
  bool forwarded = listener_->cfg->forwarded;
  using kind = head_field::kind;
  auto add = [&out](std::string_view name, std::string_view value) {
    std::string n(name);
    for (auto& ch : n) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    out.push_back({std::move(n), std::string(value)});
  };
  for (const auto& f : req.fields) {
    switch (f.what) {
      case kind::underscored:
        if (limits_->underscores != config::listener_limits::underscore_action::allow) break;
        [[fallthrough]];
      case kind::end_to_end:
        if (req.connection_names_fields && named_by_connection(req.fields, f.name)) break;
        add(f.name, f.value);
        break;
      case kind::forwarded:
        if (!forwarded) {
          add(f.name, f.value);
          break;
        }
        if (!fwd_.empty()) fwd_ += ", "sv;
        fwd_ += f.value;
        break;
      case kind::x_forwarded_for:
        if (!xff_.empty()) xff_ += ", "sv;
        xff_ += f.value;
        break;
      default:
        break;  // hop-by-hop, re-framed, answered or set by the proxy
    }
  }
  if (!xff_.empty()) xff_ += ", "sv;
  xff_ += client_ip_;
  out.push_back({"x-forwarded-for", xff_});
  out.push_back({"x-forwarded-proto", tls ? "https" : "http"});
  if (!host.empty()) out.push_back({"x-forwarded-host", std::string(host)});
  if (forwarded) {
    std::string v = fwd_;
    if (!v.empty()) v += ", "sv;
    append_forwarded_element(v, client_ip_, host, tls ? "https" : "http");
    out.push_back({"forwarded", std::move(v)});
  }
  if (body_ == body_kind::length) out.push_back({"content-length", std::to_string(body_length_)});
  expect_continue_ = body_ != body_kind::none && !body_in_memory_ && req.version == 11 &&
                     beast::iequals(req.expect, "100-continue");
}

template <class Stream>
asio::awaitable<bool> session<Stream>::proxy_h2(pool::snapshot_cache& cache) {
  auto snap = cache.hold();
  struct record_on_exit {
    session* s;
    ~record_on_exit() { s->record_metrics(); }
  } record{this};
  const auto& ccfg = cache.owner().config();
  std::shared_ptr<asio::ssl::context> tls_ctx;  // protocol h2
  std::string tls_key;
  if (ccfg.protocol == config::upstream_protocol::h2) {
    tls_ctx = h2::client_tls_context(ccfg, tls_key);
    if (!tls_ctx) {  // logged when it was built
      skip_request_body();
      co_await send_simple(502, keep_alive_);
      co_return keep_alive_;
    }
  }
  build_h2_request(tls_ctx != nullptr);

  attempts tries;
  start_attempts(tries, ccfg);
  bool idempotent = is_idempotent(req_head_.method);
  unsigned fail_status = 0;
  body_streamed_ = false;

  while (core::backend* b = next_backend(tries, *snap)) {
    pool::lease lease(*b);
    bool fresh_only = false;
    for (;;) {  // at most twice: a pooled connection that failed unused, then a fresh one
      b->stats().requests.fetch_add(1, std::memory_order_relaxed);
      auto up_start = steady::now();
      std::shared_ptr<h2_upstream> u = fresh_only ? nullptr : worker_->h2_pool_.take(b, tls_key);
      bool reused = u != nullptr;
      if (!u) {
        auto conn = co_await connect_upstream(b, ccfg, lease, fail_status);
        if (!conn) break;  // next backend
        u = std::make_shared<h2_upstream>(std::move(conn), h2::settings{});
        if (tls_ctx) {
          // The handshake counts against the connect timeout.
          auto peer = h2::client_tls_peer_of(ccfg, *b);
          bool ok =
              co_await h2::client_tls_handshake(u->use_tls(*tls_ctx, tls_key), peer, b->name());
          if (!ok) {
            bool to = timed_out(asio::error::operation_aborted);
            up_.reset();
            if (to) log_h2_upstream(*b, "TLS handshake timed out");
            upstream_connect_failed(*b, ccfg, lease, to, nullptr, fail_status);
            break;  // next backend
          }
        }
      }
      up_ = u->conn;
      bool retry_safe = false;
      auto r = co_await exchange_h2(*u, ccfg, lease, reused, retry_safe, fail_status);
      upstream_seconds_ = std::chrono::duration<double>(steady::now() - up_start).count();
      up_.reset();
      if (r != attempt::failed) answered_ = b;
      if (r == attempt::done) {
        if (reuse_upstream_) {
          u->conn->keep = snap;
          worker_->h2_pool_.put(std::move(u), ccfg.pool.max_idle, ccfg.pool.idle_timeout);
        }
        if (body_in_memory_ && body_ == body_kind::length) down_buf_.consume(body_length_);
        co_return keep_alive_;
      }
      if (r == attempt::close) co_return false;
      // Failed before any response byte reached the client. `retry_safe`: the upstream did
      // not process the stream (refused, beyond its GOAWAY, or a pooled connection found
      // dead before anything of the stream came back, for idempotent requests).
      bool replayable = body_in_memory_ && !body_streamed_;
      if (!replayable) {
        co_await fail(fail_status ? fail_status : 502);
        co_return false;
      }
      if (retry_safe && reused && !fresh_only) {
        fresh_only = true;
        continue;
      }
      if (!retry_safe && !idempotent) {
        co_await fail(fail_status ? fail_status : 502);
        co_return false;
      }
      break;  // next backend
    }
  }
  co_return co_await no_answer(tries, ccfg, fail_status);
}

template <class Stream>
asio::awaitable<attempt> session<Stream>::exchange_h2(h2_upstream& u, const config::cluster& ccfg,
                                                      pool::lease& lease, bool reused,
                                                      bool& retry_safe, unsigned& fail_status) {
  auto* b = u.conn->backend;
  reuse_upstream_ = false;
  const bool end = body_ == body_kind::none;
  const std::int32_t id = u.h2.submit_request(h2_req_, end);
  if (id < 0) {  // no stream ids left, or GOAWAY: nothing was sent
    retry_safe = true;
    fail_status = 502;
    co_return attempt::failed;
  }
  u.begin(id);
  if (!end && body_in_memory_) {
    u.h2.send_data(id, std::string_view(static_cast<const char*>(down_buf_.data().data()),
                                        static_cast<std::size_t>(body_length_)));
    u.h2.end_stream(id);
    body_complete_ = true;
  }
  set_deadline(ccfg.timeouts.write);
  if (auto ec = co_await u.flush()) {
    retry_safe = reused && !timed_out(ec);
    co_return upstream_failed(retry_safe ? nullptr : &lease, b, ec, "writing the request",
                              fail_status);
  }
  if (!end && !body_in_memory_) {
    body_streamed_ = true;
    if (expect_continue_) {
      set_deadline(timeouts_->send);
      static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [ec, n] = co_await write_all(down_, asio::buffer(cont));
      if (ec) co_return attempt::close;
    }
    auto r = co_await send_body_h2(u, ccfg);
    if (r == relay::client_failed) {
      u.h2.reset(id, h2::error::cancel);
      set_deadline(ccfg.timeouts.write);
      co_await u.flush();
      keep_alive_ = false;
      if (body_status_ > 1) co_await send_simple(body_status_, false);
      co_return attempt::close;
    }
    if (r == relay::upstream_failed && !u.have_headers) {
      lease.report(pool::outcome::reset);
      log_h2_upstream(*b, "failed while receiving the request body", &last_up_ec_);
      fail_status = 502;
      co_return attempt::failed;
    }
  }

  // The response head (1xx answers are skipped by h2_upstream).
  set_deadline(ccfg.timeouts.read);
  while (!u.have_headers && !u.closed && !u.ended) {
    if (auto ec = co_await u.read_more()) {
      bool to = timed_out(ec);
      retry_safe = (reused && !u.received && !to && idempotent_request()) || id > u.goaway_last;
      co_return upstream_failed(retry_safe && reused ? nullptr : &lease, b, ec,
                                "reading the response", fail_status);
    }
  }
  unsigned status = 0;
  if (u.have_headers) {
    auto sv = h2::find_header(u.headers, ":status");
    if (sv.size() == 3 && sv[0] >= '1' && sv[0] <= '9' && sv[1] >= '0' && sv[1] <= '9' &&
        sv[2] >= '0' && sv[2] <= '9')
      status = static_cast<unsigned>((sv[0] - '0') * 100 + (sv[1] - '0') * 10 + (sv[2] - '0'));
  }
  if (status == 0) {
    retry_safe = u.close_code == h2::error::refused_stream || id > u.goaway_last;
    lease.report(pool::outcome::reset);
    log_h2_upstream(*b, u.have_headers ? "answered without a valid :status"
                                       : "reset the stream before answering");
    fail_status = 502;
    co_return attempt::failed;
  }
  lease.report(status >= 500 ? pool::outcome::http_5xx : pool::outcome::success);
  status_ = status;
  co_return co_await relay_h2_response(u, ccfg);
}

template <class Stream>
auto session<Stream>::send_body_h2(h2_upstream& u, const config::cluster& ccfg)
    -> asio::awaitable<relay> {
  const std::int32_t id = u.id;
  std::uint64_t left = body_length_;
  for (;;) {
    if (u.closed || u.ended) {
      keep_alive_ = false;  // answered (or reset) early: the rest of the body is not read
      co_return relay::ok;
    }
    body_piece piece;
    if (!co_await next_body_piece(left, piece, false)) co_return relay::client_failed;
    if (piece.size > 0) u.h2.send_data(id, std::string_view(piece.data, piece.size));
    if (body_ == body_kind::length) {
      down_buf_.consume(piece.size);
      left -= piece.size;
    }
    if (piece.last) {
      u.h2.end_stream(id);
      body_complete_ = true;
    }
    set_deadline(ccfg.timeouts.write);
    if (auto ec = co_await u.flush()) {
      last_up_ec_ = ec;
      co_return relay::upstream_failed;
    }
    if (piece.last) co_return relay::ok;
    while (u.h2.outbound_size(id) >= relay_size && !u.closed && !u.ended) {
      set_deadline(ccfg.timeouts.write);
      if (auto ec = co_await u.read_more()) {
        last_up_ec_ = ec;
        co_return relay::upstream_failed;
      }
    }
  }
}

template <class Stream>
asio::awaitable<attempt> session<Stream>::relay_h2_response(h2_upstream& u,
                                                            const config::cluster& ccfg) {
  const unsigned status = status_;
  const bool client11 = req_head_.version == 11;
  const bool no_body = req_head_.is_head() || status == 204 || status == 304;
  std::optional<std::uint64_t> length;
  bool bad_length = false;
  for (const auto& f : u.headers) {
    if (f.name != "content-length") continue;
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(f.value.data(), f.value.data() + f.value.size(), v);
    if (ec != std::errc{} || ptr != f.value.data() + f.value.size() || f.value.empty() ||
        (length && *length != v))
      bad_length = true;
    else
      length = v;
  }
  if (bad_length) length.reset();
  // The whole body is already in (the stream ended): its length is known.
  if (!length && !bad_length && u.ended) length = u.data.size();
  const bool out_chunked = !no_body && !length && client11;
  if (!no_body && !length && !client11) keep_alive_ = false;
  if (worker_->draining_) keep_alive_ = false;

  auto& h = head_;
  h.clear();
  h += "HTTP/1.1 "sv;
  append_number(h, status);
  h += ' ';
  h += reason_phrase(status);
  h += "\r\n"sv;
  bool has_date = false;
  for (const auto& f : u.headers) {
    if (f.name.empty() || f.name[0] == ':' || f.name == "content-length" ||
        h2::connection_specific(f.name))
      continue;
    if (f.name == "date") has_date = true;
    h += f.name;
    h += ": "sv;
    h += f.value;
    h += "\r\n"sv;
  }
  if (!has_date) append_date(h);
  append_response_framing(h, status != 204 ? length : std::nullopt, out_chunked, keep_alive_,
                          client11);
  response_started_ = true;

  const std::int32_t id = u.id;
  std::uint64_t body_sent = 0;
  bool head_pending = true;
  bool too_long = false;
  for (;;) {
    const bool done = u.ended || u.closed;
    std::string_view chunk = u.data;
    if (no_body) chunk = {};
    if (length && body_sent + chunk.size() > *length) {
      chunk = chunk.substr(0, static_cast<std::size_t>(*length - body_sent));
      too_long = true;
    }
    const bool clean_end = done && u.ended && u.close_code == 0 && !too_long;
    if (head_pending || !chunk.empty() || (done && out_chunked && clean_end)) {
      const auto size_line =
          out_chunked && !chunk.empty() ? chunk_size_line(chunk.size()) : chunk_size_line();
      static constexpr std::string_view crlf = "\r\n";
      static constexpr std::string_view last = "0\r\n\r\n";
      std::array<asio::const_buffer, 5> bufs{
          asio::buffer(h.data(), head_pending ? h.size() : 0), size_line.buffer(),
          asio::buffer(chunk.data(), chunk.size()),
          asio::buffer(crlf.data(), out_chunked && !chunk.empty() ? 2 : 0),
          asio::buffer(last.data(), out_chunked && done && clean_end ? last.size() : 0)};
      set_deadline(timeouts_->send);
      auto [ec, n] = co_await write_all(down_, bufs);
      if (ec) {
        u.h2.reset(id, h2::error::cancel);
        co_return attempt::close;
      }
      head_pending = false;
      bytes_sent_ += chunk.size();
      body_sent += chunk.size();
    }
    if (!u.data.empty()) {
      u.h2.consume(id, u.data.size());
      u.data.clear();
    }
    if (done) break;
    set_deadline(ccfg.timeouts.write);
    if (auto ec = co_await u.flush()) {
      log_h2_upstream(*u.conn->backend, "failed in the response body", &ec);
      co_return attempt::close;
    }
    set_deadline(ccfg.timeouts.read);
    if (auto ec = co_await u.read_more()) {
      log_h2_upstream(*u.conn->backend, "failed in the response body", &ec);
      co_return attempt::close;
    }
  }
  const bool complete =
      u.ended && u.close_code == 0 && !too_long && (!length || no_body || body_sent == *length);
  if (!complete) {
    log_h2_upstream(*u.conn->backend, "ended the response early or reset it");
    co_return attempt::close;
  }
  if (!u.closed) {
    // Our side is still open (the upload was cut short by the answer): end the stream.
    u.h2.reset(id, h2::error::no_error);
  }
  set_deadline(ccfg.timeouts.write);
  bool flushed = !co_await u.flush();
  reuse_upstream_ = flushed && u.usable() && !worker_->draining_;
  co_return attempt::done;
}

// Both downstream flavours: the entry points instantiate this file's members (session.cpp
// instantiates the rest of the class). Not coroutines: the awaitable is returned unstarted.
asio::awaitable<bool> proxy_to_h2(session<tcp::socket>& s, pool::snapshot_cache& cache) {
  return s.proxy_h2(cache);
}
asio::awaitable<bool> proxy_to_h2(session<tls_stream>& s, pool::snapshot_cache& cache) {
  return s.proxy_h2(cache);
}

}  // namespace sluice::http::session_detail
