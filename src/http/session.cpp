// The HTTP/1.1 reverse-proxy session: one coroutine per downstream connection, on its worker's
// io_context (single-threaded: nothing here locks).
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

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One non-blocking send(2) of `data`; the number of bytes the kernel took (0 on any error: the
// asynchronous write that follows then reports it).
std::size_t send_now(tcp::socket& s, std::string_view data) {
  ssize_t n = ::send(s.native_handle(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

constexpr std::size_t read_chunk = 16 * 1024;      // downstream/upstream head reads
// What a woken parked connection reads at first (like nginx's client_header_buffer_size): a
// head that does not fit is read on in read_chunk steps.
constexpr std::size_t idle_read = 1024;
constexpr std::size_t relay_size = 32 * 1024;      // body relay buffer
constexpr std::size_t small_body = 4 * 1024;       // copied behind the head for one send(2)
constexpr unsigned max_tries_cap = 16;
// Cleartext servers kept waiting per worker for the next woken connection (more are made
// when more connections are busy at once; past this many idle, a server ends).
constexpr std::size_t max_idle_servers = 32;
// A busy keep-alive connection (its previous idle spell was shorter than this) waits for its
// next request in its session, and parks only once it has been idle this long. Parking and
// waking cost about 3,000 instructions per request; a connection that sends request after
// request never pays them, and one that goes quiet is parked by the deadline scan.
constexpr auto park_grace = 250ms;
// Longest wait for the client's close_notify once ours is sent (TLS).
constexpr auto close_notify_wait = 1s;

using tls_stream = asio::ssl::stream<tcp::socket>;

// The TCP socket under a downstream stream: cancel, shutdown, options, endpoints.
tcp::socket& raw(tcp::socket& s) noexcept { return s; }
tcp::socket& raw(tls_stream& s) noexcept { return s.next_layer(); }

// Reads some bytes: from a cleartext socket with net::async_read_relay, which spares the
// recv(2) bound to fail after a read that emptied the socket (net/relay_read.hpp), and tells
// (`left`, when given) what was left queued behind the read.
template <class Token>
auto read_some(tcp::socket& s, asio::mutable_buffer b, Token&& token,
               net::queued* left = nullptr) {
  return net::async_read_relay(s, b, std::forward<Token>(token), left);
}
template <class Token>
auto read_some(tls_stream& s, asio::mutable_buffer b, Token&& token) {
  return s.async_read_some(b, std::forward<Token>(token));
}

std::chrono::milliseconds positive_min(std::chrono::milliseconds a, std::chrono::milliseconds b) {
  if (a <= 0ms) return b;
  if (b <= 0ms) return a;
  return std::min(a, b);
}

tcp::endpoint endpoint_of(const core::address& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  return ep;
}

// A new upstream connection: TCP_NODELAY, and TCP_INQ for read_some.
void set_upstream_options(tcp::socket& s) {
  error_code ec;
  s.set_option(tcp::no_delay(true), ec);
  net::enable_inq(s);
}


void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// "Name: value" for a cookie in a Cookie header, for ring_hash on a cookie.
std::string_view find_cookie(std::string_view header, std::string_view name) {
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
[[gnu::noinline, gnu::cold]] void log_connect_failure(const core::backend& b, bool timed_out,
                                                      const error_code& ec,
                                                      const std::string& cluster) {
  SLUICE_LOG(warn, "upstream " << b.name() << " connect "
                               << (timed_out ? "timed out" : "failed: " + ec.message())
                               << " (cluster " << cluster << ")");
}

[[gnu::noinline, gnu::cold]] void log_bad_request(const std::string& client, unsigned status,
                                                  const char* reason) {
  SLUICE_LOG(info, "client " << client << " sent a bad request head (" << reason
                              << "): answered " << status);
}

// "Date: <now>\r\n" (RFC 9110 §6.6.1: a proxy adds one to a response that has none).
void append_date(std::string& h) {
  h += "Date: "sv;
  h += core::http_date();
  h += "\r\n"sv;
}

[[gnu::noinline, gnu::cold]] void log_bad_body(const std::string& client,
                                               std::string_view reason) {
  SLUICE_LOG(info, "client " << client << " sent a bad chunked body (" << reason << ")");
}

[[gnu::noinline, gnu::cold]] void log_h2_upstream(const core::backend& b, const char* what,
                                                  const error_code* ec = nullptr) {
  SLUICE_LOG(warn, "upstream " << b.name() << " (HTTP/2) " << what
                               << (ec ? ": " + ec->message() : std::string()));
}

[[gnu::noinline, gnu::cold]] void log_handshake_failure(const std::string& client,
                                                        bool timed_out, const error_code& ec) {
  SLUICE_LOG(debug, "TLS handshake with " << client
                        << (timed_out ? " timed out" : " failed: " + ec.message()));
}

[[gnu::noinline, gnu::cold]] void log_no_backend(const std::string& cluster) {
  SLUICE_LOG(warn, "no backend available in cluster " << cluster);
}

[[gnu::noinline, gnu::cold]] void log_upstream(const core::backend& b, const char* what,
                                               const error_code* ec = nullptr) {
  if (ec)
    SLUICE_LOG(warn, "upstream " << b.name() << what << ec->message());
  else
    SLUICE_LOG(warn, "upstream " << b.name() << what);
}

[[gnu::noinline, gnu::cold]] void log_upstream(const core::backend& b, const char* what,
                                               const char* detail) {
  SLUICE_LOG(warn, "upstream " << b.name() << what << detail);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace {

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
constexpr std::size_t kept_read_buffer = 4 * 1024;

void trim_read_buffer(beast::flat_buffer& b) {
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

thread_local scratch_pool tl_scratch;

// How an attempt on one upstream went.
enum class attempt { done, failed, close };

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
  void detach() {
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
  // exchange. A fresh connection still waiting for its first request is not idle: its client connected
  // before the listener closed (or before a binary upgrade took the socket over) and gets an
  // answer.
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
    raw(down_).cancel(ec);
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
      raw(down_).cancel(ec);
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
      raw(down_).cancel(ec);
      if (up_) up_->socket.cancel(ec);
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
  void refresh_listener() {
    const auto& cur = current_listener(listener_->index);
    if (!cur || cur == listener_) return;
    listener_ = cur;
    limits_ = &listener_->cfg->limits;
    timeouts_ = &listener_->cfg->timeouts;
    set_min_timeout();
  }

  // ---- main loop -----------------------------------------------------------------------------
  // TLS: one session per connection, from the handshake to the close.
  asio::awaitable<void> run(std::shared_ptr<session> self, bool first) {
    co_await serve_connection(first);
  }

  asio::awaitable<void> serve_connection(bool first) {
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
        worker_->park(std::move(rec_), std::move(down_), listener_, client, requests_, false,
                      idle);
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

  // TLS: the handshake, under the listener's handshake timeout. False: the connection is done
  // here (a failed handshake closes quietly; ALPN "h2" handed the stream to the HTTP/2 server).
  asio::awaitable<bool> handshake() {
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
        h2::start_server_session(std::move(down_), {}, listener_, worker_->index_,
                                 h2_observers());
        co_return false;
      }
    }
    co_return true;
  }

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
  asio::awaitable<bool> read_head(bool first) {
    reset_request_log();
    // The first request must arrive within the header timeout; later ones get the keep-alive
    // idle timeout until their first byte, then the header timeout for the rest of the head.
    set_deadline(first ? timeouts_->header : timeouts_->idle);
    bool header_deadline = first;
    for (;;) {
      if (down_buf_.size() > 0) {
        auto view = std::string_view(static_cast<const char*>(down_buf_.data().data()),
                                     down_buf_.size());
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
            chunks_.reset(
                {.max_trailers = limits_->max_header_bytes, .max_body = limits_->max_body});
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

  // Serves the request whose head is in req_head_. Returns whether to keep the connection.
  asio::awaitable<bool> handle() {
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
      case body_framing::chunked: body_ = body_kind::chunked; break;
      default: body_ = body_kind::none; break;
    }
    body_in_memory_ = body_ == body_kind::none ||
                      (body_ == body_kind::length && down_buf_.size() >= body_length_);
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
      co_return co_await proxy_h2(cl.cache(worker_->index_));
    co_return co_await proxy(cl.cache(worker_->index_));
  }

  // A request answered locally: drop a body already in memory, else close after answering.
  void skip_request_body() {
    if (body_ == body_kind::none) return;
    if (body_in_memory_) {
      down_buf_.consume(body_length_);
      return;
    }
    keep_alive_ = false;
  }

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
  core::backend* next_backend(attempts& a, const pool::snapshot& snap) {
    if (a.n >= a.max) return nullptr;
    a.ctx.exclude = std::span<core::backend* const>(a.tried.data(), a.n);
    core::backend* b = snap.pick(a.ctx);
    if (!b) return nullptr;
    if (a.n > 0 && worker_->metrics_) worker_->metrics_->on_retry(metrics_cluster_);
    a.tried[a.n++] = b;
    upstream_addr_ = b->name();
    return b;
  }
  // A new upstream connection to `b` (it becomes up_, under the connect timeout), or null
  // after a failure, reported, counted and logged.
  asio::awaitable<std::shared_ptr<upstream_conn>> connect_upstream(
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
  void upstream_connect_failed(core::backend& b, const config::cluster& ccfg, pool::lease& lease,
                               bool to, const error_code* ec, unsigned& fail_status) {
    lease.report(pool::outcome::connect_failure);
    if (worker_->metrics_) worker_->metrics_->on_connect_failure(metrics_cluster_);
    if (ec) log_connect_failure(b, to, *ec, ccfg.name);
    fail_status = to ? 504 : 502;
  }
  // No attempt answered: 503 when there was no backend to try, else the last failure's status.
  asio::awaitable<bool> no_answer(const attempts& a, const config::cluster& ccfg,
                                  unsigned fail_status) {
    if (a.n == 0) {
      log_no_backend(ccfg.name);
      skip_request_body();
      co_await send_simple(503, keep_alive_);
      co_return keep_alive_;
    }
    co_return co_await fail(fail_status ? fail_status : 502);
  }

  asio::awaitable<bool> proxy(pool::snapshot_cache& cache) {
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
            worker_->pool_.put(std::move(conn), ccfg.pool.max_idle, ccfg.pool.idle_timeout,
                               quiet);
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

  enum class relay { ok, client_failed, upstream_failed };

  // ---- HTTP/1.1 requests to HTTP/2 clusters (h2c, h2) -----------------------------------------------
  // Each request is one stream on an HTTP/2 connection that carries one stream at a time and
  // waits in the worker's h2 pool in between. The request body is sent before the response is
  // read (reading the upstream only for window updates while its window is closed); an answer
  // that comes first ends the upload and the client connection closes after it.

  // The request as HTTP/2 fields (RFC 9113 §8.3.1): pseudo fields from the request line and
  // Host, the end-to-end fields with lower-case names, X-Forwarded-* and Forwarded as on the
  // HTTP/1.1 path, Content-Length when the client gave one.
  // `https`: the upstream hop is TLS (protocol h2).
  void build_h2_request(bool https) {
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
        default: break;  // hop-by-hop, re-framed, answered or set by the proxy
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

  asio::awaitable<bool> proxy_h2(pool::snapshot_cache& cache) {
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
            bool ok = co_await h2::client_tls_handshake(u->use_tls(*tls_ctx, tls_key), peer,
                                                        b->name());
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

  asio::awaitable<attempt> exchange_h2(h2_upstream& u, const config::cluster& ccfg,
                                       pool::lease& lease, bool reused, bool& retry_safe,
                                       unsigned& fail_status) {
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
        auto [ec, n] = co_await asio::async_write(down_, asio::buffer(cont), use_tuple);
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
        retry_safe = (reused && !u.received && !to && idempotent_request()) ||
                     id > u.goaway_last;
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

  bool idempotent_request() const { return is_idempotent(req_head_.method); }

  // The request body from the client as DATA frames, bounded by the stream's flow control:
  // while more than a relay buffer is queued, only the upstream is read (window updates). An
  // upstream may send its response head meanwhile; response data waits (within the stream's
  // receive window) until the body is sent, so an upstream that must send more than that window
  // before it reads on stalls until a timeout: full-duplex streaming is for HTTP/2 clients.
  asio::awaitable<relay> send_body_h2(h2_upstream& u, const config::cluster& ccfg) {
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

  // The HTTP/1.1 response: status line, the fields minus pseudo and connection-specific ones,
  // Date when none came; Content-Length as declared, else chunked (HTTP/1.1 client) or until
  // close (HTTP/1.0). Body bytes are acknowledged upstream as they reach the client.
  asio::awaitable<attempt> relay_h2_response(h2_upstream& u, const config::cluster& ccfg) {
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
    if (length && status != 204) {
      h += "Content-Length: "sv;
      append_number(h, *length);
      h += "\r\n"sv;
    } else if (out_chunked) {
      h += "Transfer-Encoding: chunked\r\n"sv;
    }
    if (!keep_alive_)
      h += "Connection: close\r\n"sv;
    else if (!client11)
      h += "Connection: keep-alive\r\n"sv;
    h += "\r\n"sv;
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
        char size_line[24];
        std::size_t sl = 0;
        if (out_chunked && !chunk.empty()) {
          auto r = std::to_chars(size_line, size_line + 16, chunk.size(), 16);
          sl = static_cast<std::size_t>(r.ptr - size_line);
          size_line[sl++] = '\r';
          size_line[sl++] = '\n';
        }
        static constexpr std::string_view crlf = "\r\n";
        static constexpr std::string_view last = "0\r\n\r\n";
        std::array<asio::const_buffer, 5> bufs{
            asio::buffer(h.data(), head_pending ? h.size() : 0), asio::buffer(size_line, sl),
            asio::buffer(chunk.data(), chunk.size()),
            asio::buffer(crlf.data(), out_chunked && !chunk.empty() ? 2 : 0),
            asio::buffer(last.data(), out_chunked && done && clean_end ? last.size() : 0)};
        set_deadline(timeouts_->send);
        auto [ec, n] = co_await asio::async_write(down_, bufs, use_tuple);
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
    const bool complete = u.ended && u.close_code == 0 && !too_long &&
                          (!length || no_body || body_sent == *length);
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

  // Every attempt failed before the response started.
  asio::awaitable<bool> fail(unsigned status) {
    if (body_streamed_) keep_alive_ = false;
    else skip_request_body();
    co_await send_simple(status, keep_alive_);
    co_return keep_alive_;
  }

  std::uint64_t request_hash(const config::hash_on& h) {
    switch (h.what) {
      case config::hash_on::kind::client_ip: return balance::hash_key(client_ip_);
      case config::hash_on::kind::header: return balance::hash_key(req_head_.find(h.name));
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

  // The request head sent upstream, built once per request (attempts reuse it).
  void build_upstream_head() {
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
          if (limits_->underscores != config::listener_limits::underscore_action::allow)
            return false;
          [[fallthrough]];
        case kind::end_to_end:
          return !req.connection_names_fields || !named_by_connection(req.fields, f.name);
        case kind::host: return !absolute;
        case kind::forwarded:
          if (!forwarded) return true;
          if (!fwd_.empty()) fwd_ += ", "sv;
          fwd_ += f.value;
          return false;
        case kind::x_forwarded_for:
          if (!xff_.empty()) xff_ += ", "sv;
          xff_ += f.value;
          return false;
        default: return false;  // hop-by-hop, re-framed, answered or set by the proxy
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
      case body_kind::chunked: h += "Transfer-Encoding: chunked\r\n"sv; break;
    }
    h += "\r\n"sv;
    expect_continue_ = body_ != body_kind::none && !body_in_memory_ && req.version == 11 &&
                       beast::iequals(req.expect, "100-continue");
  }

  // One attempt on one upstream connection. `fail_status` gets 502/504 on failure; `stale` is
  // set when a reused connection failed before any response byte (worth one fresh retry).
  asio::awaitable<attempt> exchange(upstream_conn& conn, const config::cluster& ccfg,
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
      std::size_t sent = body_now == 0 ? send_now(conn.socket, up_head_) : 0;
      if (sent < up_head_.size() + body_now) {
        auto head = asio::buffer(up_head_.data() + sent, up_head_.size() - sent);
        auto [ec, n] = body_now == 0
                           ? co_await asio::async_write(conn.socket, head, use_tuple)
                           : co_await asio::async_write(
                                 conn.socket,
                                 std::array<asio::const_buffer, 2>{
                                     head, asio::buffer(down_buf_.data().data(), body_now)},
                                 use_tuple);
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
      auto [ec, n] = co_await asio::async_write(down_, asio::buffer(cont), use_tuple);
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
      auto [unused, r] = co_await (send_body(conn, ccfg) &&
                                   receive(conn, ccfg, lease, reused, stale, fail_status));
      stale = false;  // a streamed body cannot be replayed anyway
      if (body_status_ != 0) {  // the client failed: timeout, bad chunk, too large, gone
        if (!response_started_ && body_status_ >= 400) co_await send_simple(body_status_, false);
        co_return attempt::close;
      }
      if (r == attempt::failed && body_up_failed_ && fail_status == 0) fail_status = 502;
      co_return r;
    }
  }

  // The body half of a streamed exchange. Never writes to the client: failures are left in
  // body_status_ (client side) or body_up_failed_ (upstream side).
  asio::awaitable<int> send_body(upstream_conn& conn, const config::cluster& ccfg) {
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

  // Reads the response head and relays the response. With a streamed body still in flight when
  // the response is over, the body is abandoned and the client connection will close.
  asio::awaitable<attempt> receive(upstream_conn& conn, const config::cluster& ccfg,
                                   pool::lease& lease, bool reused, bool& stale,
                                   unsigned& fail_status) {
    auto r = co_await receive_response(conn, ccfg, lease, reused, stale, fail_status);
    if (!body_done_) {
      cancelled_by_response_ = true;
      keep_alive_ = false;
      reuse_upstream_ = false;
      error_code ec;
      raw(down_).cancel(ec);  // the body half checks cancelled_by_response_ before each read
      conn.socket.close(ec);
    }
    if (!body_complete_) {
      keep_alive_ = false;
      reuse_upstream_ = false;
    }
    co_return r;
  }

  asio::awaitable<attempt> receive_response(upstream_conn& conn, const config::cluster& ccfg,
                                            pool::lease& lease, bool reused, bool& stale,
                                            unsigned& fail_status) {
    auto* b = conn.backend;
    // 3. The response head (skipping interim 1xx responses).
    bool got_any = false;
    bool head_request = req_head_.is_head();
    set_deadline(ccfg.timeouts.read);
    for (;;) {
      if (conn.buffer.size() > 0) {
        got_any = true;
        auto buffered = std::string_view(static_cast<const char*>(conn.buffer.data().data()),
                                         conn.buffer.size());
        const char* error = "";
        auto r = parse_response_head(buffered, response_header_limit, head_request, head_in_,
                                     &error);
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
      auto [ec, n] = co_await read_some(conn.socket, conn.buffer.prepare(read_chunk), use_tuple, &up_left_);
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

  // `lease` null: a pooled connection the upstream had closed (not the backend's fault; logged
  // at debug level only).
  attempt upstream_failed(pool::lease* lease, core::backend* b, const error_code& ec,
                          const char* what, unsigned& fail_status) {
    bool to = timed_out(ec);
    fail_status = to ? 504 : 502;
    if (!lease) {
      SLUICE_LOG(debug, "upstream " << b->name() << " closed a pooled connection (" << what
                                    << ": " << ec.message() << ")");
      return attempt::failed;
    }
    lease->report(to ? pool::outcome::timeout : pool::outcome::reset);
    SLUICE_LOG(warn, "upstream " << b->name() << (to ? " timed out " : " failed ") << what
                                 << (to ? "" : ": " + ec.message()));
    fail_status = to ? 504 : 502;
    return attempt::failed;
  }

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
  asio::awaitable<bool> next_body_piece(std::uint64_t left, body_piece& out, bool body_half) {
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
        auto n = p.decode({static_cast<const char*>(down_buf_.data().data()), down_buf_.size()},
                          buf, relay_size, got);
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

  asio::awaitable<bool> read_body_bytes(std::size_t want, bool body_half) {
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

  // A streamed request body toward an HTTP/1.1 upstream: Content-Length bodies byte for byte,
  // chunked ones decoded and re-framed as chunks (extensions and trailers are not forwarded).
  asio::awaitable<relay> relay_request_body(upstream_conn& conn, const config::cluster& ccfg) {
    const bool chunked = body_ == body_kind::chunked;
    std::uint64_t left = body_length_;
    for (;;) {
      body_piece piece;
      if (!co_await next_body_piece(left, piece, true)) co_return relay::client_failed;
      if (piece.size > 0 || (chunked && piece.last)) {
        char size_line[24];
        std::size_t sl = 0;
        if (chunked && piece.size > 0) {
          auto r = std::to_chars(size_line, size_line + 16, piece.size, 16);
          sl = static_cast<std::size_t>(r.ptr - size_line);
          size_line[sl++] = '\r';
          size_line[sl++] = '\n';
        }
        static constexpr std::string_view crlf = "\r\n";
        static constexpr std::string_view last = "0\r\n\r\n";
        std::array<asio::const_buffer, 4> bufs{
            asio::buffer(size_line, sl), asio::buffer(piece.data, piece.size),
            asio::buffer(crlf.data(), chunked && piece.size > 0 ? 2 : 0),
            asio::buffer(last.data(), chunked && piece.last ? last.size() : 0)};
        set_body_deadline(ccfg.timeouts.write);
        auto [ec, n] = co_await asio::async_write(conn.socket, bufs, use_tuple);
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

  // Builds the downstream response head and relays the body; decides both keep-alives.
  asio::awaitable<attempt> relay_response(upstream_conn& conn, const config::cluster& ccfg,
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
    if (in == framing::length) {
      h += "Content-Length: "sv;
      append_number(h, length);
      h += "\r\n"sv;
    } else if (out_chunked) {
      h += "Transfer-Encoding: chunked\r\n"sv;
    }
    if (!keep_alive_)
      h += "Connection: close\r\n"sv;
    else if (!client11)
      h += "Connection: keep-alive\r\n"sv;
    h += "\r\n"sv;
    conn.buffer.consume(head_size);
    response_started_ = true;

    bool upstream_ok = false;
    switch (in) {
      case framing::none: {
        set_deadline(timeouts_->send);
        auto [ec, n] = co_await asio::async_write(down_, asio::buffer(h), use_tuple);
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
            if constexpr (!tls) sent = send_now(down_, h);
            if (sent < h.size())
              std::tie(ec, std::ignore) = co_await asio::async_write(
                  down_, asio::buffer(h.data() + sent, h.size() - sent), use_tuple);
          } else {
            std::tie(ec, std::ignore) = co_await asio::async_write(
                down_,
                std::array<asio::const_buffer, 2>{asio::buffer(h), asio::buffer(body, length)},
                use_tuple);
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
        auto r = co_await relay_unknown_length_response(conn, ccfg, in == framing::chunked,
                                                        out_chunked);
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

  asio::awaitable<relay> relay_length_response(upstream_conn& conn, const config::cluster& ccfg,
                                               std::uint64_t length) {
    // First write: the head plus whatever body bytes came with it.
    std::uint64_t left = length;
    auto first = static_cast<std::size_t>(std::min<std::uint64_t>(left, conn.buffer.size()));
    {
      std::array<asio::const_buffer, 2> bufs{asio::buffer(head_),
                                             asio::buffer(conn.buffer.data().data(), first)};
      set_deadline(timeouts_->send);
      auto [ec, n] = co_await asio::async_write(down_, bufs, use_tuple);
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
      auto [wec, wn] = co_await asio::async_write(down_, conn.buffer.data(), use_tuple);
      if (wec) co_return relay::client_failed;
      conn.buffer.consume(n);
      left -= n;
      bytes_sent_ += n;
    }
    co_return relay::ok;
  }

  // Chunked (decoded by res_chunks_) or close-delimited upstream body; to the client as chunks
  // or raw (close-delimited).
  asio::awaitable<relay> relay_unknown_length_response(upstream_conn& conn,
                                                       const config::cluster& ccfg, bool chunked,
                                                       bool out_chunked) {
    auto& rp = res_chunks_;
    char* buf = relay_buffer();
    bool head_pending = true;
    bool eof = false;
    for (;;) {
      std::size_t got = 0;
      bool done = false;
      if (chunked) {
        if (conn.buffer.size() > 0) {
          auto n = rp.decode(
              {static_cast<const char*>(conn.buffer.data().data()), conn.buffer.size()}, buf,
              relay_size, got);
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
        char size_line[24];
        std::size_t sl = 0;
        if (out_chunked && got > 0) {
          auto r = std::to_chars(size_line, size_line + 16, got, 16);
          sl = static_cast<std::size_t>(r.ptr - size_line);
          size_line[sl++] = '\r';
          size_line[sl++] = '\n';
        }
        static constexpr std::string_view crlf = "\r\n";
        static constexpr std::string_view last = "0\r\n\r\n";
        std::array<asio::const_buffer, 5> bufs{
            asio::buffer(head_.data(), head_pending ? head_.size() : 0),
            asio::buffer(size_line, sl), asio::buffer(buf, got),
            asio::buffer(crlf.data(), out_chunked && got > 0 ? 2 : 0),
            asio::buffer(last.data(), out_chunked && done ? last.size() : 0)};
        set_deadline(timeouts_->send);
        auto [wec, wn] = co_await asio::async_write(down_, bufs, use_tuple);
        if (wec) co_return relay::client_failed;
        head_pending = false;
        bytes_sent_ += got;
      }
      if (done) co_return relay::ok;
      if (conn.buffer.size() == 0 || (chunked && got == 0)) {
        set_deadline(ccfg.timeouts.read);
        auto [ec, n] = co_await read_some(conn.socket, conn.buffer.prepare(relay_size), use_tuple, &up_left_);
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

  // After a 101: the head, then raw bytes both ways until both sides are done.
  asio::awaitable<void> tunnel(upstream_conn& conn, std::size_t head_size) {
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
    auto [ec, n] = co_await asio::async_write(down_, bufs, use_tuple);
    if (ec) co_return;
    conn.buffer.consume(conn.buffer.size());
    if (down_buf_.size() > 0) {
      auto [wec, wn] = co_await asio::async_write(conn.socket, down_buf_.data(), use_tuple);
      if (wec) co_return;
      down_buf_.consume(down_buf_.size());
    }
    set_deadline(timeouts_->idle);
    char* buf = relay_buffer();
    co_await (pump(down_, conn.socket, buf, relay_size / 2) &&
              pump(conn.socket, down_, buf + relay_size / 2, relay_size / 2));
  }

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
          raw(from).cancel(ignored);
          raw(to).cancel(ignored);
        }
        co_return;
      }
      set_deadline(timeouts_->idle);
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf, n), use_tuple);
      if (wec) {
        error_code ignored;
        raw(from).cancel(ignored);
        raw(to).cancel(ignored);
        co_return;
      }
      set_deadline(timeouts_->idle);
    }
  }

  // ---- local answers -------------------------------------------------------------------------
  asio::awaitable<void> send_simple(unsigned status, bool keep_alive) {
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
    auto [ec, n] = co_await asio::async_write(down_, asio::buffer(h), use_tuple);
    if (ec) keep_alive_ = false;
  }

  asio::awaitable<void> send_direct(const config::direct_response& d) {
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
    if (!keep_alive_) h += "Connection: close\r\n"sv;
    else if (req_head_.version == 10) h += "Connection: keep-alive\r\n"sv;
    h += "\r\n"sv;
    bool send_body = !no_body && !req_head_.is_head();
    bytes_sent_ = send_body ? d.body.size() : 0;
    std::array<asio::const_buffer, 2> bufs{asio::buffer(h),
                                           asio::buffer(d.body.data(), send_body ? d.body.size() : 0)};
    set_deadline(timeouts_->send);
    auto [ec, n] = co_await asio::async_write(down_, bufs, use_tuple);
    if (ec) keep_alive_ = false;
  }

  // What one request leaves behind, back to a new session's values (a cleartext server
  // serves many connections; every field here must be listed).
  void reset_request_state() {
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

  void reset_request_log() {
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

  void record_metrics() {
    if (recorded_ || !worker_->metrics_ || status_ == 0) return;
    recorded_ = true;
    const auto up = upstream_seconds_ >= 0
                        ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::duration<double>(upstream_seconds_))
                        : std::chrono::nanoseconds{0};
    worker_->metrics_->on_request(listener_->index, metrics_cluster_, answered_, status_,
                                  finish_time() - start_, up, bytes_in_, bytes_sent_,
                                  metrics_route_);
  }

 public:
  int metrics_cluster_ = -1;
  std::size_t metrics_route_ = metrics::no_slot;  // the matched route's metrics slot
  core::backend* answered_ = nullptr;
  bool recorded_ = false;
  std::uint64_t bytes_in_ = 0;

 private:
  void write_access_log() {
    if (!worker_->access_.enabled() || status_ == 0) return;
    log::access_entry e;
    e.client_ip = client_ip_;
    // Zero when the access log was switched on (a reload) while this request was under way.
    e.time = log_time_ != std::chrono::system_clock::time_point{}
                 ? log_time_
                 : std::chrono::system_clock::now() -
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           finish_time() - start_);
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

// Both downstream flavours, compiled here once.
template class session<tcp::socket>;
template class session<tls_stream>;

}  // namespace

// ---------------------------------------------------------------------------------------------

std::shared_ptr<worker_state> make_worker_state(asio::io_context& io,
                                                std::shared_ptr<log::access_log> access_log,
                                                std::shared_ptr<metrics::registry> metrics,
                                                unsigned worker_index) {
  auto w = std::make_shared<worker_state>(io, std::move(access_log), std::move(metrics),
                                          worker_index);
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
