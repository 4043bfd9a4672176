// The HTTP/1.1 reverse-proxy session class: one coroutine per downstream connection, on its
// worker's io_context (single-threaded: nothing here locks). Its members are defined in
// session.cpp (the HTTP/1.1 path, and the class's explicit instantiations) and session_h2.cpp
// (requests to HTTP/2 clusters). Internal header: includes Asio and Beast; only those two
// files include it.
#pragma once
#include "proxy.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include "field_allocator.hpp"
#include "h2_upstream.hpp"
#include "chunked_decoder.hpp"
#include "h2/client_tls.hpp"
#include "h2/proxy.hpp"
#include "net/relay_read.hpp"
#include "net/io_batch.hpp"
#include "net/tls_server.hpp"
#include "sluice/h2/preface.hpp"
#include "sluice/h2/translate.hpp"
#include "sluice/balance/policy.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/http/forwarding.hpp"
#include "sluice/http/message_head.hpp"
#include "sluice/http/router.hpp"
#include "sluice/log/log.hpp"
#include "sluice/pool/lease.hpp"
#include "upstream_pool.hpp"
#include "worker.hpp"

namespace sluice::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using namespace std::string_view_literals;  // appends of literals: no strlen at run time

namespace session_detail {

inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One non-blocking send(2) of `data`; the number of bytes the kernel took (0 on any error: the
// asynchronous write that follows then reports it).
inline std::size_t send_now(tcp::socket& s, std::string_view data) {
  ssize_t n = ::send(s.native_handle(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

inline constexpr std::size_t read_chunk = 16 * 1024;      // downstream/upstream head reads
// What a woken parked connection reads at first (like nginx's client_header_buffer_size): a
// head that does not fit is read on in read_chunk steps.
inline constexpr std::size_t idle_read = 1024;
inline constexpr std::size_t relay_size = 32 * 1024;      // body relay buffer
inline constexpr std::size_t small_body = 4 * 1024;       // copied behind the head for one send(2)
inline constexpr unsigned max_tries_cap = 16;
// Cleartext servers kept waiting per worker for the next woken connection (more are made
// when more connections are busy at once; past this many idle, a server ends).
inline constexpr std::size_t max_idle_servers = 32;
// A busy keep-alive connection (its previous idle spell was shorter than this) waits for its
// next request in its session, and parks only once it has been idle this long. Parking and
// waking cost about 3,000 instructions per request; a connection that sends request after
// request never pays them, and one that goes quiet is parked by the deadline scan.
inline constexpr auto park_grace = 250ms;
// Longest wait for the client's close_notify once ours is sent (TLS).
inline constexpr auto close_notify_wait = 1s;

using tls_stream = asio::ssl::stream<tcp::socket>;

// The TCP socket under a downstream stream: cancel, shutdown, options, endpoints.
inline tcp::socket& raw(tcp::socket& s) noexcept { return s; }
inline tcp::socket& raw(tls_stream& s) noexcept { return s.next_layer(); }

// Reads some bytes: from a cleartext socket with net::async_read_relay, which spares the
// recv(2) bound to fail after a read that emptied the socket (net/relay_read.hpp), and tells
// (`left`, when given) what was left queued behind the read.
template <class Token>
auto read_some(tcp::socket& s, asio::mutable_buffer b, Token&& token,
               net::queued* left = nullptr) {
  return net::async_read_batched(s, b, std::forward<Token>(token), left);
}
template <class Token>
auto read_some(tls_stream& s, asio::mutable_buffer b, Token&& token) {
  return s.async_read_some(b, std::forward<Token>(token));
}

// Writes all of `b`: to a cleartext socket batched with the loop turn's other sends, one
// io_uring_enter(2) for all of them (net/io_batch.hpp), where the worker has a batcher.
template <class Buffers>
auto write_all(tcp::socket& s, const Buffers& b) {
  return net::async_write_batched(s, b, use_tuple);
}
template <class Buffers>
auto write_all(tls_stream& s, const Buffers& b) {
  return asio::async_write(s, b, use_tuple);
}

inline std::chrono::milliseconds positive_min(std::chrono::milliseconds a,
                                              std::chrono::milliseconds b) {
  if (a <= 0ms) return b;
  if (b <= 0ms) return a;
  return std::min(a, b);
}

inline tcp::endpoint endpoint_of(const core::address& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  return ep;
}

// A new upstream connection: TCP_NODELAY, and TCP_INQ for read_some.
inline void set_upstream_options(tcp::socket& s) {
  error_code ec;
  s.set_option(tcp::no_delay(true), ec);
  net::enable_inq(s);
}


inline void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// "Name: value" for a cookie in a Cookie header, for ring_hash on a cookie.
inline std::string_view find_cookie(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto semi = header.find(';');
    auto item = header.substr(0, semi);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    if (item.size() > name.size() && item.substr(0, name.size()) == name &&
        item[name.size()] == '=')
      return item.substr(name.size() + 1);
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return {};
}

// Logging builds an ostringstream. Called from coroutines through these out-of-line helpers, so
// that no coroutine frame carries one per call site: the hot frames stay small enough for the
// allocator's per-thread caches.
[[gnu::noinline, gnu::cold]] inline void log_connect_failure(const core::backend& b, bool timed_out,
                                                             const error_code& ec,
                                                             const std::string& cluster) {
  SLUICE_LOG(warn, "upstream " << b.name() << " connect "
                               << (timed_out ? "timed out" : "failed: " + ec.message())
                               << " (cluster " << cluster << ")");
}

[[gnu::noinline, gnu::cold]] inline void log_bad_request(const std::string& client, unsigned status,
                                                         const char* reason) {
  SLUICE_LOG(info, "client " << client << " sent a bad request head (" << reason
                              << "): answered " << status);
}

// "Date: <now>\r\n" (RFC 9110 §6.6.1: a proxy adds one to a response that has none).
inline void append_date(std::string& h) {
  h += "Date: "sv;
  h += core::http_date();
  h += "\r\n"sv;
}

// The end of a response head to an HTTP/1.1 or 1.0 client: its framing (Content-Length when
// `length` is given, else chunked when `chunked`, else none: delimited by the close), the
// Connection field the client needs to know what comes next, and the blank line.
inline void append_response_framing(std::string& h, std::optional<std::uint64_t> length,
                                    bool chunked, bool keep_alive, bool client11) {
  if (length) {
    h += "Content-Length: "sv;
    append_number(h, *length);
    h += "\r\n"sv;
  } else if (chunked) {
    h += "Transfer-Encoding: chunked\r\n"sv;
  }
  if (!keep_alive)
    h += "Connection: close\r\n"sv;
  else if (!client11)
    h += "Connection: keep-alive\r\n"sv;
  h += "\r\n"sv;
}

// The size line of one chunk ("1a2f\r\n"), formatted in place; empty when made for no chunk.
struct chunk_size_line {
  chunk_size_line() = default;
  explicit chunk_size_line(std::size_t n) noexcept {
    auto r = std::to_chars(buf, buf + 16, n, 16);
    len = static_cast<std::size_t>(r.ptr - buf);
    buf[len++] = '\r';
    buf[len++] = '\n';
  }
  asio::const_buffer buffer() const noexcept { return asio::buffer(buf, len); }

  char buf[24];
  std::size_t len = 0;
};

[[gnu::noinline, gnu::cold]] inline void log_bad_body(const std::string& client,
                                                      std::string_view reason) {
  SLUICE_LOG(info, "client " << client << " sent a bad chunked body (" << reason << ")");
}

[[gnu::noinline, gnu::cold]] inline void log_h2_upstream(const core::backend& b, const char* what,
                                                         const error_code* ec = nullptr) {
  SLUICE_LOG(warn, "upstream " << b.name() << " (HTTP/2) " << what
                               << (ec ? ": " + ec->message() : std::string()));
}

[[gnu::noinline, gnu::cold]] inline void log_handshake_failure(const std::string& client,
                                                               bool timed_out,
                                                               const error_code& ec) {
  SLUICE_LOG(debug, "TLS handshake with " << client
                        << (timed_out ? " timed out" : " failed: " + ec.message()));
}

[[gnu::noinline, gnu::cold]] inline void log_no_backend(const std::string& cluster) {
  SLUICE_LOG(warn, "no backend available in cluster " << cluster);
}

[[gnu::noinline, gnu::cold]] inline void log_upstream(const core::backend& b, const char* what,
                                                      const error_code* ec = nullptr) {
  if (ec)
    SLUICE_LOG(warn, "upstream " << b.name() << what << ec->message());
  else
    SLUICE_LOG(warn, "upstream " << b.name() << what);
}

[[gnu::noinline, gnu::cold]] inline void log_upstream(const core::backend& b, const char* what,
                                                      const char* detail) {
  SLUICE_LOG(warn, "upstream " << b.name() << what << detail);
}

}  // namespace session_detail

// ---------------------------------------------------------------------------------------------

namespace session_detail {

enum class body_kind { none, length, chunked };

// Buffers a session grows while it serves (the client read buffer, the heads it builds), kept
// per worker thread when it ends, for the next one: a keep-alive connection gets a new session
// for every request (it parks in between), and regrowing them each time would cost a dozen
// allocations per request.
struct scratch {
  beast::flat_buffer down_buf;
  std::string up_head, head, xff, fwd;
};

// A read buffer larger than this is freed rather than kept (by an idle server, or in the pool).
inline constexpr std::size_t kept_read_buffer = 4 * 1024;

inline void trim_read_buffer(beast::flat_buffer& b) {
  b.clear();
  if (b.capacity() > kept_read_buffer) b.shrink_to_fit();  // frees it
}

class scratch_pool {
 public:
  scratch take() {
    if (free_.empty()) return {};
    scratch s = std::move(free_.back());
    free_.pop_back();
    return s;
  }
  void give(scratch&& s) {
    if (free_.size() >= keep) return;
    trim_read_buffer(s.down_buf);
    free_.push_back(std::move(s));
  }

 private:
  static constexpr std::size_t keep = 64;  // a worker's busiest moment, roughly
  std::vector<scratch> free_;
};

inline thread_local scratch_pool tl_scratch;

// How an attempt on one upstream went.
enum class attempt { done, failed, close };

template <class Stream>
class session;

// An HTTP/1.1 request to an HTTP/2 cluster (session::proxy_h2), for each downstream stream:
// defined in session_h2.cpp, which instantiates that part of the class. Plain functions, so
// that session.cpp's calls are strong references (with -flto, GCC keeps references to member
// instantiations weak, and a weak reference does not pull session_h2.o out of the library).
asio::awaitable<bool> proxy_to_h2(session<tcp::socket>& s, pool::snapshot_cache& cache);
asio::awaitable<bool> proxy_to_h2(session<tls_stream>& s, pool::snapshot_cache& cache);

// One downstream connection. Stream: tcp::socket (cleartext), or tls_stream (TLS listener: the
// handshake runs first, and ALPN "h2" hands the stream to the HTTP/2 server).
template <class Stream>
class session final : public session_base,
                      public std::enable_shared_from_this<session<Stream>> {
 public:
  static constexpr bool tls = std::is_same_v<Stream, tls_stream>;

  session(Stream stream, std::shared_ptr<const listener_state> listener,
          std::shared_ptr<worker_state> worker, scratch s = tl_scratch.take())
      : down_(std::move(stream)),
        down_buf_(std::move(s.down_buf)),
        listener_(std::move(listener)),
        worker_(std::move(worker)),
        limits_(&listener_->cfg->limits),
        timeouts_(&listener_->cfg->timeouts),
        up_head_(std::move(s.up_head)),
        head_(std::move(s.head)),
        xff_(std::move(s.xff)),
        fwd_(std::move(s.fwd)) {
    set_min_timeout();
    worker_->link(this, min_timeout_);
    attached_ = true;
  }

  // Cleartext server: made without a connection; attach() gives it one, serve() runs it.
  struct server_tag {};
  session(server_tag, std::shared_ptr<worker_state> worker, scratch s = tl_scratch.take())
    requires(!tls)
      : down_(worker->io_.get_executor()),
        down_buf_(std::move(s.down_buf)),
        worker_(std::move(worker)),
        limits_(nullptr),
        timeouts_(nullptr),
        up_head_(std::move(s.up_head)),
        head_(std::move(s.head)),
        xff_(std::move(s.xff)),
        fwd_(std::move(s.fwd)) {}

  ~session() {
    if (attached_) detach();
    tl_scratch.give(scratch{std::move(down_buf_), std::move(up_head_), std::move(head_),
                            std::move(xff_), std::move(fwd_)});
  }

  // TLS: a fresh connection, starting with the handshake.
  void start() {
    error_code ec;  // (TCP_NODELAY comes from the listening socket)
    if (!raw(down_).non_blocking()) raw(down_).non_blocking(true, ec);
    client_ip_ = packed_address::peer_of(raw(down_)).to_string();
    asio::co_spawn(down_.get_executor(), run(this->shared_from_this(), true), asio::detached);
  }

  // Cleartext server: takes a woken parked connection (its read brought `rec->got` bytes).
  // The state of the connection served before is gone (detach); the session keeps the record
  // for the next time the connection parks.
  void attach(std::unique_ptr<parked_conn> rec)
    requires(!tls)
  {
    // A reloaded configuration applies from the next request on.
    std::shared_ptr<const listener_state> listener = std::move(rec->listener);
    if (const auto& cur = current_listener(listener->index); cur) listener = cur;
    listener_ = std::move(listener);
    limits_ = &listener_->cfg->limits;
    timeouts_ = &listener_->cfg->timeouts;
    set_min_timeout();
    down_ = tcp::socket(std::move(rec->socket));
    // Everything that belongs to one connection, as a new session has it. (What belongs to
    // one request is set by read_head, handle and proxy.)
    deadline_ = body_deadline_ = steady::time_point::max();
    timed_out_ = body_timed_out_ = false;
    closed_ = idle_ = awaiting_first_ = drain_closed_ = false;
    handshake_done_ = handed_off_ = parked_ = false;
    drain_marks_ = 0;
    reset_request_state();
    requests_ = rec->requests;
    client_ip_ = rec->client.to_string();
    first_ = rec->first;
    // Busy: it had served a request and woke again soon (not a new connection's first wait).
    busy_ = rec->requests > 0 &&
            core::coarse_ms() - rec->parked_ms < static_cast<std::uint32_t>(park_grace.count());
    park_at_ = steady::time_point::max();
    park_requested_ = false;
    std::string_view bytes(rec->bytes, rec->got);
    rec_ = std::move(rec);
    attached_ = true;
    worker_->link(this, min_timeout_);
    bool full = bytes.size() == parked_bytes;
    auto b = down_buf_.prepare(full ? idle_read : bytes.size());
    std::memcpy(b.data(), bytes.data(), bytes.size());
    down_buf_.commit(bytes.size());
    if (full) {
      // The parked read came back full: the rest of the request (a longer head, a body) is
      // probably there already. Take it now without waiting (the socket is non-blocking):
      // up to idle_read bytes, and when that fills too, up to read_chunk, so that a request of
      // up to read_chunk bytes is seen whole: its body stays in memory (replayable on retry)
      // and limits apply at once. would_block: nothing yet; errors show on the next read.
      error_code rec;
      std::size_t want = idle_read - bytes.size();
      auto m = down_.read_some(down_buf_.prepare(want), rec);
      if (!rec) {
        down_buf_.commit(m);
        if (m == want) {
          m = down_.read_some(down_buf_.prepare(read_chunk - idle_read), rec);
          if (!rec) down_buf_.commit(m);
        }
      }
    }
  }

  // The connection is gone from this session (parked, closed or handed to the HTTP/2 server):
  // counted closed unless parked or handed off (the HTTP/2 server counts it when it ends).
  void detach();

  // Cleartext server: serves the attached connection until it parks or closes, then waits
  // for the next woken one (resume_parked), as long as the worker wants idle servers.
  asio::awaitable<void> serve(std::shared_ptr<session> self)
    requires(!tls)
  {
    auto& w = *worker_;
    for (;;) {
      co_await serve_connection(first_);
      detach();
      // Wait for the next woken connection (written out here: no coroutine frame per wait).
      if (w.stopped_ || w.idle_servers_ >= max_idle_servers) co_return;
      ++w.idle_servers_;  // resume_parked counts it down when it wakes one
      co_await w.server_wake_.async_wait(use_tuple);
      if (w.ready_.empty()) co_return;  // the worker stops
      auto rec = std::move(w.ready_.front());
      w.ready_.pop_front();
      attach(std::move(rec));
    }
  }

  // Drain: an idle keep-alive connection closes (see below); a busy one after its current
  // exchange. A fresh connection still waiting for its first request is not idle: its client
  // connected before the listener closed (or before a binary upgrade took the socket over) and
  // gets an answer.
  //
  // Called when the drain starts and again every second while it lasts. An idle connection is
  // closed only once it has stayed idle across three ticks (at least two seconds): closing a
  // connection the client is just sending its next request on would lose that request, and a
  // busy client's next request is answered with `Connection: close` instead.
  void drain_now() override {
    if (!idle_ || awaiting_first_) return;
    if (++drain_marks_ < 4) return;
    drain_closed_ = true;
    error_code ec;
    net::cancel_io(raw(down_), ec);
  }

 private:
  // ---- timeouts ------------------------------------------------------------------------------
  // One deadline per session, re-set before each I/O (a store, no syscall). The worker's
  // deadline scan (check_deadlines) runs at a quarter of the smallest timeout of its sessions.
  void set_deadline(std::chrono::milliseconds d) {
    timed_out_ = false;
    deadline_ = d > 0ms ? core::coarse_now() + d : steady::time_point::max();
  }
  bool timed_out(const error_code& ec) const {
    return timed_out_ && ec == asio::error::operation_aborted;
  }
  // The body half of a streamed exchange runs beside the response half: its own deadline.
  void set_body_deadline(std::chrono::milliseconds d) {
    body_timed_out_ = false;
    body_deadline_ = d > 0ms ? core::coarse_now() + d : steady::time_point::max();
  }
  bool body_timed_out(const error_code& ec) const {
    return body_timed_out_ && ec == asio::error::operation_aborted;
  }

  std::chrono::milliseconds check_deadlines(steady::time_point now) override {
    if (closed_) return min_timeout_;
    if (now >= park_at_) {
      // Idle past the grace: the read is cancelled and read_head parks the connection.
      park_at_ = steady::time_point::max();
      park_requested_ = true;
      error_code ec;
      net::cancel_io(raw(down_), ec);
    }
    bool fired = false;
    if (now >= deadline_) {
      timed_out_ = fired = true;
      deadline_ = steady::time_point::max();
    }
    if (now >= body_deadline_) {
      body_timed_out_ = fired = true;
      body_deadline_ = steady::time_point::max();
    }
    if (fired) {
      error_code ec;
      net::cancel_io(raw(down_), ec);
      if (up_) net::cancel_io(up_->socket, ec);
    }
    return park_at_ != steady::time_point::max() ? std::min<std::chrono::milliseconds>(
                                                       min_timeout_, park_grace)
                                                 : min_timeout_;
  }

  void set_min_timeout() {
    const auto& t = *timeouts_;
    min_timeout_ = positive_min(listener_->min_cluster_timeout,
                                positive_min(positive_min(t.header, t.idle),
                                             positive_min(t.body, t.send)));
    if (min_timeout_ <= 0ms) min_timeout_ = 1s;
  }

  // Between requests: a reloaded configuration applies to the next request on this connection.
  void refresh_listener();

  // ---- main loop -----------------------------------------------------------------------------
  // TLS: one session per connection, from the handshake to the close.
  asio::awaitable<void> run(std::shared_ptr<session> self, bool first) {
    co_await serve_connection(first);
  }

  asio::awaitable<void> serve_connection(bool first);

  // TLS: the handshake, under the listener's handshake timeout. False: the connection is done
  // here (a failed handshake closes quietly; ALPN "h2" handed the stream to the HTTP/2 server).
  asio::awaitable<bool> handshake();

  // Where the HTTP/2 server counts and logs the streams of a connection handed over to it.
  h2::observers h2_observers() const {
    return {worker_->metrics_, &worker_->access_, worker_};
  }

  // TLS: our close_notify, and the client's awaited a short while (best effort: a client that
  // just closes, or never answers, costs at most close_notify_wait).
  asio::awaitable<void> close_notify() {
    if constexpr (tls) {
      set_deadline(close_notify_wait);
      co_await down_.async_shutdown(use_tuple);
    }
  }

  // Reads and vets the next request head. False: close the connection (any error answer has
  // been sent already).
  asio::awaitable<bool> read_head(bool first);

  // Serves the request whose head is in req_head_. Returns whether to keep the connection.
  asio::awaitable<bool> handle();

  // A request answered locally: drop a body already in memory, else close after answering.
  void skip_request_body();

  // ---- proxying ------------------------------------------------------------------------------
  // The backends of one request's attempts: the policy's picks, each excluding those tried.
  struct attempts {
    balance::pick_context ctx;
    std::array<core::backend*, max_tries_cap> tried{};
    std::size_t n = 0;
    unsigned max = 1;
  };
  void start_attempts(attempts& a, const config::cluster& ccfg) {
    if (ccfg.policy == config::policy_kind::ring_hash) a.ctx.hash = request_hash(ccfg.hash);
    a.max = std::clamp<unsigned>(ccfg.max_tries, 1, max_tries_cap);
  }
  // The next backend to try, or null when the tries are used up or none is left.
  core::backend* next_backend(attempts& a, const pool::snapshot& snap);
  // A new upstream connection to `b` (it becomes up_, under the connect timeout), or null
  // after a failure, reported, counted and logged.
  asio::awaitable<std::shared_ptr<upstream_conn>> connect_upstream(
      core::backend* b, const config::cluster& ccfg, pool::lease& lease, unsigned& fail_status);
  void upstream_connect_failed(core::backend& b, const config::cluster& ccfg, pool::lease& lease,
                               bool to, const error_code* ec, unsigned& fail_status) {
    lease.report(pool::outcome::connect_failure);
    if (worker_->metrics_) worker_->metrics_->on_connect_failure(metrics_cluster_);
    if (ec) log_connect_failure(b, to, *ec, ccfg.name);
    fail_status = to ? 504 : 502;
  }
  // No attempt answered: 503 when there was no backend to try, else the last failure's status.
  asio::awaitable<bool> no_answer(const attempts& a, const config::cluster& ccfg,
                                  unsigned fail_status);

  asio::awaitable<bool> proxy(pool::snapshot_cache& cache);

  enum class relay { ok, client_failed, upstream_failed };

  // ---- HTTP/1.1 requests to HTTP/2 clusters (h2c, h2): session_h2.cpp ---------------------
  // Each request is one stream on an HTTP/2 connection that carries one stream at a time and
  // waits in the worker's h2 pool in between. The request body is sent before the response is
  // read (reading the upstream only for window updates while its window is closed); an answer
  // that comes first ends the upload and the client connection closes after it.

  // The request as HTTP/2 fields (RFC 9113 §8.3.1): pseudo fields from the request line and
  // Host, the end-to-end fields with lower-case names, X-Forwarded-* and Forwarded as on the
  // HTTP/1.1 path, Content-Length when the client gave one.
  // `https`: the upstream hop is TLS (protocol h2).
  void build_h2_request(bool https);

  asio::awaitable<bool> proxy_h2(pool::snapshot_cache& cache);
  friend asio::awaitable<bool> proxy_to_h2(session<tcp::socket>&, pool::snapshot_cache&);
  friend asio::awaitable<bool> proxy_to_h2(session<tls_stream>&, pool::snapshot_cache&);

  asio::awaitable<attempt> exchange_h2(h2_upstream& u, const config::cluster& ccfg,
                                       pool::lease& lease, bool reused, bool& retry_safe,
                                       unsigned& fail_status);

  bool idempotent_request() const { return is_idempotent(req_head_.method); }

  // The request body from the client as DATA frames, bounded by the stream's flow control:
  // while more than a relay buffer is queued, only the upstream is read (window updates). An
  // upstream may send its response head meanwhile; response data waits (within the stream's
  // receive window) until the body is sent, so an upstream that must send more than that window
  // before it reads on stalls until a timeout: full-duplex streaming is for HTTP/2 clients.
  asio::awaitable<relay> send_body_h2(h2_upstream& u, const config::cluster& ccfg);

  // The HTTP/1.1 response: status line, the fields minus pseudo and connection-specific ones,
  // Date when none came; Content-Length as declared, else chunked (HTTP/1.1 client) or until
  // close (HTTP/1.0). Body bytes are acknowledged upstream as they reach the client.
  asio::awaitable<attempt> relay_h2_response(h2_upstream& u, const config::cluster& ccfg);

  // Every attempt failed before the response started.
  asio::awaitable<bool> fail(unsigned status) {
    if (body_streamed_) keep_alive_ = false;
    else skip_request_body();
    co_await send_simple(status, keep_alive_);
    co_return keep_alive_;
  }

  std::uint64_t request_hash(const config::hash_on& h);

  // The request head sent upstream, built once per request (attempts reuse it).
  void build_upstream_head();

  // One attempt on one upstream connection. `fail_status` gets 502/504 on failure; `stale` is
  // set when a reused connection failed before any response byte (worth one fresh retry).
  asio::awaitable<attempt> exchange(upstream_conn& conn, const config::cluster& ccfg,
                                    pool::lease& lease, bool reused, bool& stale,
                                    unsigned& fail_status);

  // The body half of a streamed exchange. Never writes to the client: failures are left in
  // body_status_ (client side) or body_up_failed_ (upstream side).
  asio::awaitable<int> send_body(upstream_conn& conn, const config::cluster& ccfg);

  // Reads the response head and relays the response. With a streamed body still in flight when
  // the response is over, the body is abandoned and the client connection will close.
  asio::awaitable<attempt> receive(upstream_conn& conn, const config::cluster& ccfg,
                                   pool::lease& lease, bool reused, bool& stale,
                                   unsigned& fail_status);

  asio::awaitable<attempt> receive_response(upstream_conn& conn, const config::cluster& ccfg,
                                            pool::lease& lease, bool reused, bool& stale,
                                            unsigned& fail_status);

  // `lease` null: a pooled connection the upstream had closed (not the backend's fault; logged
  // at debug level only).
  attempt upstream_failed(pool::lease* lease, core::backend* b, const error_code& ec,
                          const char* what, unsigned& fail_status);

  char* relay_buffer() {
    if (!relay_) relay_ = std::make_unique_for_overwrite<char[]>(relay_size);
    return relay_.get();
  }
  // The request body relay runs alongside the response relay: its own buffer.
  char* request_relay_buffer() {
    if (!req_relay_) req_relay_ = std::make_unique_for_overwrite<char[]>(relay_size);
    return req_relay_.get();
  }

  // The next piece of a streamed request body. Content-Length: the bytes at the front of
  // down_buf_ (read when it is empty), which the caller consumes once they are sent; chunked:
  // decoded data in the request relay buffer. `last`: the body ends with this piece (which may
  // be empty). False: the client failed (body_status_ 408 on the body timeout, 400 on bad
  // chunking, else a read error). `body_half`: the reads run under the body half's own deadline
  // beside the response half, and stop once that half has cancelled them.
  struct body_piece {
    const char* data = nullptr;
    std::size_t size = 0;
    bool last = false;
  };
  asio::awaitable<bool> next_body_piece(std::uint64_t left, body_piece& out, bool body_half);

  asio::awaitable<bool> read_body_bytes(std::size_t want, bool body_half);

  // A streamed request body toward an HTTP/1.1 upstream: Content-Length bodies byte for byte,
  // chunked ones decoded and re-framed as chunks (extensions and trailers are not forwarded).
  asio::awaitable<relay> relay_request_body(upstream_conn& conn, const config::cluster& ccfg);

  // Builds the downstream response head and relays the body; decides both keep-alives.
  asio::awaitable<attempt> relay_response(upstream_conn& conn, const config::cluster& ccfg,
                                          std::size_t head_size);

  asio::awaitable<relay> relay_length_response(upstream_conn& conn, const config::cluster& ccfg,
                                               std::uint64_t length);

  // Chunked (decoded by res_chunks_) or close-delimited upstream body; to the client as chunks
  // or raw (close-delimited).
  asio::awaitable<relay> relay_unknown_length_response(upstream_conn& conn,
                                                       const config::cluster& ccfg, bool chunked,
                                                       bool out_chunked);

  // After a 101: the head, then raw bytes both ways until both sides are done.
  asio::awaitable<void> tunnel(upstream_conn& conn, std::size_t head_size);

  // From/To: the downstream stream (TLS or not) and the upstream socket, either way round.
  template <class From, class To>
  asio::awaitable<void> pump(From& from, To& to, char* buf, std::size_t size) {
    for (;;) {
      auto [ec, n] = co_await read_some(from, asio::buffer(buf, size), use_tuple);
      if (ec) {
        error_code ignored;
        // A TLS client that just closes its socket ends its side too (stream_truncated).
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
          raw(to).shutdown(tcp::socket::shutdown_send, ignored);
        } else {
          net::cancel_io(raw(from), ignored);
          net::cancel_io(raw(to), ignored);
        }
        co_return;
      }
      set_deadline(timeouts_->idle);
      auto [wec, wn] = co_await write_all(to, asio::buffer(buf, n));
      if (wec) {
        error_code ignored;
        net::cancel_io(raw(from), ignored);
        net::cancel_io(raw(to), ignored);
        co_return;
      }
      set_deadline(timeouts_->idle);
    }
  }

  // ---- local answers -------------------------------------------------------------------------
  asio::awaitable<void> send_simple(unsigned status, bool keep_alive);

  asio::awaitable<void> send_direct(const config::direct_response& d);

  // What one request leaves behind, back to a new session's values (a cleartext server
  // serves many connections; every field here must be listed).
  void reset_request_state();

  // ---- access log ----------------------------------------------------------------------------
  // A request's start: the precise clock for its latency, the wall clock only for the access
  // log's timestamp. Its end is read once, for the metrics and the access log alike.
  void mark_start() {
    start_ = steady::now();
    finished_ = steady::time_point{};
    log_time_ = worker_->access_.enabled() ? std::chrono::system_clock::now()
                                           : std::chrono::system_clock::time_point{};
  }
  steady::time_point finish_time() {
    if (finished_ == steady::time_point{}) finished_ = steady::now();
    return finished_;
  }

  void reset_request_log();

  void record_metrics();

 public:
  int metrics_cluster_ = -1;
  std::size_t metrics_route_ = metrics::no_slot;  // the matched route's metrics slot
  core::backend* answered_ = nullptr;
  bool recorded_ = false;
  std::uint64_t bytes_in_ = 0;

 private:
  void write_access_log();

 private:
  // A cleartext server serves one connection after another: attach() must bring every member
  // that belongs to a connection back to its initial value, and reset_request_state() every
  // member that belongs to a request. Only buffers (their capacity) and worker_ carry over.
  Stream down_;
  beast::flat_buffer down_buf_;
  std::shared_ptr<const listener_state> listener_;
  std::shared_ptr<worker_state> worker_;
  const config::listener_limits* limits_;
  const config::listener_timeouts* timeouts_;
  steady::time_point deadline_ = steady::time_point::max();
  steady::time_point body_deadline_ = steady::time_point::max();
  bool body_timed_out_ = false;
  std::chrono::milliseconds min_timeout_{1000};
  bool timed_out_ = false;
  bool closed_ = false;
  bool idle_ = false;
  std::uint8_t drain_marks_ = 0;  // drain sweeps seen while continuously idle
  bool awaiting_first_ = false;
  bool drain_closed_ = false;
  bool handshake_done_ = false;  // TLS: close with close_notify
  bool handed_off_ = false;      // the connection went to the HTTP/2 server (ALPN h2, h2c)
  bool parked_ = false;          // the connection went on waiting without this session
  bool attached_ = false;        // serving a connection (linked in the worker's list)
  bool first_ = false;           // cleartext server: the attached connection's first request
  bool busy_ = false;            // cleartext: waits for its next request here (park_grace)
  bool park_requested_ = false;  // the deadline scan cancelled that wait: park
  steady::time_point park_at_ = steady::time_point::max();  // end of that wait
  std::unique_ptr<parked_conn> rec_;  // cleartext: its parked record, for the next park

  std::string client_ip_;
  request_head req_head_;              // the request being served: views into req_raw_
  std::string req_raw_;                // its head's bytes
  chunked_decoder chunks_;  // chunked request bodies
  chunked_decoder res_chunks_;  // chunked response bodies
  response_head head_in_;                // the upstream's response head
  split_target target_;
  std::shared_ptr<upstream_conn> up_;
  std::unique_ptr<char[]> relay_;
  std::unique_ptr<char[]> req_relay_;
  std::string up_head_;  // request head toward the upstream
  h2::header_list h2_req_;  // the same as HTTP/2 fields (h2c clusters)
  std::string head_;     // response head toward the client
  std::string xff_, fwd_;
  unsigned requests_ = 0;
  bool keep_alive_ = false;
  body_kind body_ = body_kind::none;
  std::uint64_t body_length_ = 0;
  bool body_in_memory_ = false;
  bool body_streamed_ = false;
  bool expect_continue_ = false;
  bool upgrade_ = false;
  bool reuse_upstream_ = false;
  net::queued up_left_ = net::queued::unknown;  // behind the last upstream read (TCP_INQ)
  error_code last_up_ec_;
  // streamed-body exchange state (body half and response half run side by side)
  bool body_complete_ = false;  // the whole request body was read from the client
  bool body_done_ = false;      // the body half has finished, one way or another
  unsigned body_status_ = 0;    // client-side failure of the body half: 400/408/413, 1 = gone
  bool body_up_failed_ = false;
  bool cancelled_by_body_ = false;
  bool cancelled_by_response_ = false;
  bool response_started_ = false;

  // access log fields of the current request
  std::chrono::system_clock::time_point log_time_;
  steady::time_point start_;
  steady::time_point finished_;  // set by finish_time(); zero until then
  unsigned status_ = 0;
  std::uint64_t bytes_sent_ = 0;
  std::string upstream_addr_;
  double upstream_seconds_ = -1;
  bool has_request_ = false;
};

}  // namespace session_detail

}  // namespace sluice::http
