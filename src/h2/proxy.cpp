// HTTP/2 proxying: downstream server sessions, per-worker upstream HTTP/2 connections
// multiplexing calls, and the call that links one downstream stream to one upstream stream.
// Everything of one worker runs on its thread: nothing here locks.
#include "proxy.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <netinet/in.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "http/proxy.hpp"
#include "net/downstream_stream.hpp"
#include "net/relay_read.hpp"
#include "client_tls.hpp"
#include "http1_bridge.hpp"
#include "sluice/h2/grpc.hpp"
#include "sluice/h2/session.hpp"
#include "sluice/http/router.hpp"
#include "sluice/log/log.hpp"
#include "sluice/metrics/worker_shard.hpp"
#include "sluice/pool/lease.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace sluice::h2 {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_size = 16 * 1024;
constexpr std::size_t write_batch = 64 * 1024;
constexpr std::size_t replay_limit = 64 * 1024;

std::atomic<std::size_t> g_active{0};
// The same per worker, for the accept hand-off's load (workers past the last slot share it).
constexpr std::size_t counted_workers = 256;
std::atomic<std::size_t> g_active_per_worker[counted_workers];

std::atomic<std::size_t>& active_of(unsigned worker) noexcept {
  return g_active_per_worker[worker < counted_workers ? worker : counted_workers - 1];
}

constexpr int grpc_deadline_exceeded = static_cast<int>(grpc::status::deadline_exceeded);
constexpr int grpc_unimplemented = static_cast<int>(grpc::status::unimplemented);
constexpr int grpc_unavailable = static_cast<int>(grpc::status::unavailable);
constexpr int grpc_internal = static_cast<int>(grpc::status::internal);

tcp::endpoint endpoint_of(const core::address& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  return ep;
}

// Connection-specific fields never cross an HTTP/2 hop (RFC 9113 section 8.2.2).
bool hop_by_hop(const header& h) {
  const auto& n = h.name;
  if (n == "connection" || n == "keep-alive" || n == "proxy-connection" ||
      n == "transfer-encoding" || n == "upgrade" || n == "host")
    return true;
  if (n == "te") return h.value != "trailers";
  return false;
}

[[gnu::noinline, gnu::cold]] void log_warn(const std::string& what) { SLUICE_LOG(warn, what); }

// A three-digit :status, or 0.
unsigned status_of(std::string_view s) noexcept {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && v >= 100 && v <= 999 ? v : 0;
}

// A grpc-status value, or -1 (absent or malformed).
int grpc_status_of(const header_list& h) noexcept {
  auto s = find_header(h, "grpc-status");
  int v = -1;
  if (s.empty()) return -1;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && v >= 0 ? v : -1;
}

std::uint64_t field_bytes(const header_list& h) noexcept {
  std::uint64_t n = 0;
  for (const auto& f : h) n += f.name.size() + f.value.size();
  return n;
}

// The end of a connection's stream, before its socket closes: nothing to say on plain TCP...
template <class Stream>
asio::awaitable<void> say_goodbye(Stream&) {
  co_return;
}

// ... and a TLS close_notify toward a downstream client, best effort: the pending read is
// cancelled (the reader is done), and the client's close_notify awaited at most a second.
asio::awaitable<void> say_goodbye(net::downstream_stream& s) {
  auto* tls = s.tls();
  if (!tls) co_return;
  error_code ec;
  s.lowest_layer().cancel(ec);
  asio::steady_timer bound(s.get_executor());
  bound.expires_after(1s);
  // Touches `s` only when it fires: the connection outlives this coroutine (the writer keeps it).
  bound.async_wait([&s](error_code e) {
    error_code ignored;
    if (!e) s.lowest_layer().cancel(ignored);
  });
  co_await tls->async_shutdown(use_tuple);
  bound.cancel();
}

// ---------------------------------------------------------------------------------------------
// The Asio driver of one session: one reader and one writer coroutine; only one write in
// flight, carrying everything nghttp2 had pending (gathered by session::send). Templated on the
// stream so that a TLS stream can drive the same session.

template <class Stream>
class connection : public session_handler {
 public:
  connection(Stream stream, role r, const settings& st)
      : stream_(std::move(stream)), h2_(r, *this, st), signal_(stream_.get_executor()) {
    signal_.expires_at(steady::time_point::max());
  }

  // Wakes the writer: something was submitted to the session.
  void kick() {
    if (waiting_) signal_.cancel();
  }
  bool closed() const noexcept { return closed_; }
  session& h2() noexcept { return h2_; }

 protected:
  void start_io(std::shared_ptr<void> keep, std::string initial = {}) {
    auto ex = stream_.get_executor();
    asio::co_spawn(ex, reader(keep, std::move(initial)), asio::detached);
    asio::co_spawn(ex, writer(std::move(keep)), asio::detached);
  }
  // Called once, when the connection is finished (from the writer).
  virtual void on_closed() = 0;
  // The writer may stop once its output is flushed (graceful end).
  virtual bool done() const { return false; }

  void close_now() {
    read_done_ = true;
    error_code ec;
    net::cancel_io(stream_.lowest_layer(), ec);
    kick();
  }

  Stream stream_;
  session h2_;
  steady::time_point last_active_ = steady::now();

 private:
  asio::awaitable<void> reader(std::shared_ptr<void> keep, std::string initial) {
    if (!initial.empty()) {
      bool ok = h2_.receive(initial);
      kick();
      if (!ok) {
        read_done_ = true;
        co_return;
      }
    }
    std::array<std::uint8_t, read_size> buf;
    while (!read_done_) {
      auto [ec, n] = co_await stream_.async_read_some(asio::buffer(buf), use_tuple);
      if (ec || closed_) break;
      last_active_ = steady::now();
      bool ok = h2_.receive({buf.data(), n});
      kick();
      if (!ok || !h2_.want_read()) break;
    }
    read_done_ = true;
    kick();
  }

  asio::awaitable<void> writer(std::shared_ptr<void> keep) {
    std::string out;
    for (;;) {
      out.clear();
      h2_.send(out, write_batch);
      if (out.empty()) {
        if (read_done_ || h2_.failed() || done() || (!h2_.want_read() && !h2_.want_write()))
          break;
        waiting_ = true;
        co_await signal_.async_wait(use_tuple);
        waiting_ = false;
        continue;
      }
      auto [ec, n] = co_await stream_.async_write_all(asio::buffer(out), use_tuple);
      if (ec) break;
      last_active_ = steady::now();
    }
    closed_ = true;
    read_done_ = true;
    co_await say_goodbye(stream_);
    error_code ec;
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
    stream_.lowest_layer().close(ec);
    on_closed();
  }

  asio::steady_timer signal_;
  bool waiting_ = false;
  bool read_done_ = false;
  bool closed_ = false;
};

// The stream of an upstream HTTP/2 connection: TCP (h2c), or TLS over it (h2) from
// use_tls() on. One type for both kinds, so that one upstream class (and the calls' pointers to
// it) serves either; the choice is a branch per read or write.
class upstream_stream {
 public:
  using executor_type = asio::any_io_executor;
  using lowest_layer_type = tcp::socket;

  explicit upstream_stream(tcp::socket s) : sock_(std::move(s)) {}
  executor_type get_executor() { return sock_.get_executor(); }
  tcp::socket& lowest_layer() { return tls_ ? tls_->next_layer() : sock_; }
  /// Wraps the connected socket in TLS (the handshake is the caller's).
  asio::ssl::stream<tcp::socket>& use_tls(asio::ssl::context& ctx) {
    return tls_.emplace(std::move(sock_), ctx);
  }
  asio::ssl::stream<tcp::socket>& tls() { return *tls_; }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& b, Token&& token) {
    if (tls_) return tls_->async_read_some(b, std::forward<Token>(token));
    return net::async_read_batched(sock_, b, std::forward<Token>(token));
  }
  /// Writes all of `b`; cleartext writes are batched with the loop turn's other I/O.
  template <class Buffers, class Token>
  auto async_write_all(const Buffers& b, Token&& token) {
    if (tls_) return asio::async_write(*tls_, b, std::forward<Token>(token));
    return net::async_write_batched(sock_, b, std::forward<Token>(token));
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& b, Token&& token) {
    if (tls_) return tls_->async_write_some(b, std::forward<Token>(token));
    return sock_.async_write_some(b, std::forward<Token>(token));
  }

 private:
  tcp::socket sock_;
  std::optional<asio::ssl::stream<tcp::socket>> tls_;
};

class downstream;
class upstream;
struct worker;

// One proxied stream: a downstream request and the upstream stream carrying it (an HTTP/2
// stream for h2c/h2 clusters, an HTTP/1.1 exchange for http1 clusters).
struct call final : http1_port {
  downstream* down = nullptr;
  std::int32_t down_id = 0;
  header_list request;
  bool grpc = false;
  std::shared_ptr<pool::cluster> cluster;  // the routed cluster (null: not routed yet)
  unsigned tries = 0;
  std::array<core::backend*, 16> tried{};
  std::shared_ptr<const pool::snapshot> snap;  // keeps the leased backend alive
  pool::lease lease;
  std::shared_ptr<upstream> up;  // connection carrying (or about to carry) the call
  std::int32_t up_id = -1;
  std::string pending;  // request body received before the upstream stream exists
  header_list request_trailers;
  bool request_ended = false;
  bool response_started = false;
  bool response_ended = false;
  bool upstream_done = false;  // upstream stream closed (or never needed again)
  std::size_t body_pushed = 0;
  // The request body so far while it is small: a stream the upstream refused unprocessed
  // (REFUSED_STREAM, GOAWAY) is replayed on another connection.
  std::string replay;
  bool replayable = true;
  unsigned refusals = 0;
  std::size_t unconsumed = 0;  // downstream body bytes not yet acknowledged (consume)
  std::unique_ptr<asio::steady_timer> deadline;
  std::shared_ptr<http1_exchange> h1;  // http1 clusters: the exchange relaying the call

  // What the access log and the metrics say of the stream (downstream::finish).
  steady::time_point start;                    // request headers received
  std::chrono::system_clock::time_point log_time;
  steady::time_point up_start;                 // the current attempt began
  double up_seconds = -1;                      // upstream time of the last attempt; < 0: none
  core::backend* attempt_backend = nullptr;    // of the current attempt (kept alive by `snap`)
  core::backend* answered = nullptr;           // the backend whose response was relayed
  std::uint64_t hash = 0;                      // ring_hash key
  std::uint64_t bytes_in = 0, bytes_out = 0;   // field and body bytes from / to the client
  std::size_t metrics_route = metrics::no_slot;
  int metrics_cluster = -1;
  unsigned status = 0;                         // :status sent downstream; 0: none
  int grpc_status = -1;                        // grpc-status sent downstream; -1: none
  bool recorded = false;

  ~call();
  void detach_upstream(bool reset);
  // The upstream side is over (answered, failed or abandoned): its time is taken.
  void upstream_over() {
    if (attempt_backend && up_seconds < 0)
      up_seconds = std::chrono::duration<double>(steady::now() - up_start).count();
  }
  void begin_attempt(core::backend* b) {
    attempt_backend = b;
    answered = nullptr;
    up_seconds = -1;
    up_start = steady::now();
  }

  // ---- http1_port ----
  void on_attempt(core::backend* b, const std::shared_ptr<const pool::snapshot>& s) override;
  void on_response(header_list& headers, bool end_stream) override;
  void on_response_data(std::span<const std::uint8_t> data) override;
  void on_response_end(const header_list* trailers) override;
  std::size_t response_queued() override;
  void on_request_consumed(std::size_t n) override;
  void on_failure(unsigned status, std::string_view message) override;
};

// ---------------------------------------------------------------------------------------------

struct worker {
  explicit worker(unsigned i) : index(i) {}
  unsigned index;  // the worker's number: its snapshot caches
  // Upstream connections by backend address. Weak: a connection lives as long as its calls and
  // its reader; an idle one stays open (reused) until the backend closes it.
  std::unordered_map<std::string, std::vector<std::weak_ptr<upstream>>> conns;
  std::unordered_set<downstream*> sessions;
  bool draining = false;
  // Where streams are counted and logged (the worker's HTTP/1.1 state owns both; kept alive).
  metrics::worker_shard* metrics = nullptr;
  log::access_log::writer* access_log = nullptr;
  std::shared_ptr<void> observers_owner;
  std::shared_ptr<http1_pool> h1_pool;  // idle HTTP/1.1 connections of http1 clusters

  const std::shared_ptr<http1_pool>& http1(asio::any_io_executor ex) {
    if (!h1_pool) {
      h1_pool = std::make_shared<http1_pool>(std::move(ex));
      if (draining) h1_pool->close();
    }
    return h1_pool;
  }

  // A connection with room for a call to `b`, or null when the cluster's TLS context could not
  // be built.
  std::shared_ptr<upstream> connection_for(asio::any_io_executor ex, core::backend& b,
                                           const config::cluster& cfg);
  void forget(upstream* u, const std::string& backend);
};

thread_local std::shared_ptr<worker> tl_worker;

worker& worker_for(unsigned index) {
  if (!tl_worker) tl_worker = std::make_shared<worker>(index);
  return *tl_worker;
}

// ---------------------------------------------------------------------------------------------
// Upstream: one client session to one backend; many calls multiplexed on it.

class upstream final : public connection<upstream_stream>,
                       public std::enable_shared_from_this<upstream> {
 public:
  // `tls` set: HTTP/2 over TLS (protocol h2), with the cluster's tls settings; `key` names the
  // connection in worker::conns.
  upstream(asio::any_io_executor ex, core::backend& b, const config::cluster& cfg,
           std::shared_ptr<worker> w, std::string key, std::shared_ptr<asio::ssl::context> tls)
      : connection(upstream_stream(tcp::socket(ex)), role::client, settings{}),
        backend_name_(b.name()), key_(std::move(key)), addr_(b.addr()),
        connect_timeout_(cfg.timeouts.connect), idle_timeout_(cfg.pool.idle_timeout),
        worker_(std::move(w)), tick_(ex), tls_ctx_(std::move(tls)) {
    if (tls_ctx_) tls_peer_ = client_tls_peer_of(cfg, b);
  }

  void start() {
    asio::co_spawn(stream_.get_executor(), connect(shared_from_this()), asio::detached);
  }

  // Room for one more call (counting calls waiting for the connect).
  bool usable() const {
    if (closed() || failed_ || draining_) return false;
    if (!ready_) return waiting_calls_.size() < 100;
    return h2_.can_open_stream();
  }

  // Takes the call: sends it now, or once connected.
  void enqueue(call& c) {
    c.up = shared_from_this();
    if (!ready_) {
      waiting_calls_.push_back(&c);
      return;
    }
    submit(c);
  }

  void forget_waiting(call* c) {
    waiting_calls_.erase(std::remove(waiting_calls_.begin(), waiting_calls_.end(), c),
                         waiting_calls_.end());
  }
  void forget_stream(std::int32_t id) { calls_.erase(id); }

  // ---- session_handler ----
  void on_headers(std::int32_t id, header_list& headers, bool trailers, bool end) override;
  void on_data(std::int32_t id, std::span<const std::uint8_t> data) override;
  void on_end_stream(std::int32_t id) override;
  void on_stream_close(std::int32_t id, std::uint32_t code) override;
  void on_data_sent(std::int32_t id, std::size_t n) override;
  void on_goaway(std::int32_t, std::uint32_t) override {
    draining_ = true;
    check_idle_drained();
  }

 private:
  asio::awaitable<void> connect(std::shared_ptr<upstream> self);
  void submit(call& c);
  void connect_failed();
  // A connection without calls for the cluster's pool.idle_timeout says GOAWAY and closes.
  asio::awaitable<void> idle_watch(std::shared_ptr<upstream> self) {
    while (!closed()) {
      tick_.expires_after(std::min<std::chrono::milliseconds>(idle_timeout_, 1s));
      co_await tick_.async_wait(use_tuple);
      if (closed()) break;
      if (!draining_ && calls_.empty() && h2_.open_streams() == 0 &&
          steady::now() - last_active_ >= idle_timeout_) {
        draining_ = true;
        h2_.goaway(error::no_error);
        kick();
      }
    }
  }
  void on_closed() override;
  bool done() const override { return draining_ && h2_.open_streams() == 0 && calls_.empty(); }
  void check_idle_drained() {
    if (done()) kick();
  }

  std::string backend_name_;
  std::string key_;  // in worker::conns
  core::address addr_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds idle_timeout_;
  std::shared_ptr<worker> worker_;
  asio::steady_timer tick_;
  std::vector<call*> waiting_calls_;
  std::unordered_map<std::int32_t, call*> calls_;
  bool ready_ = false;
  bool failed_ = false;
  bool draining_ = false;
  std::shared_ptr<asio::ssl::context> tls_ctx_;  // protocol h2
  client_tls_peer tls_peer_;  // SNI (unless an IP literal), the name verified, verify or not
  asio::awaitable<bool> handshake();
};

// ---------------------------------------------------------------------------------------------
// Downstream: the server session of one client connection.

class downstream final : public connection<net::downstream_stream>,
                         public std::enable_shared_from_this<downstream> {
 public:
  downstream(net::downstream_stream s, std::shared_ptr<const http::listener_state> listener,
             std::shared_ptr<worker> w, const settings& st)
      : connection(std::move(s), role::server, st), listener_(std::move(listener)),
        worker_(std::move(w)), tick_(stream_.get_executor()), conn_slot_(listener_->index) {
    worker_->sessions.insert(this);
    g_active.fetch_add(1, std::memory_order_relaxed);
    active_of(worker_->index).fetch_add(1, std::memory_order_relaxed);
    idle_timeout_ = listener_->cfg->timeouts.idle;
    if (auto age = listener_->cfg->http2.max_connection_age; age > 0ms)
      retire_at_ = steady::now() + age;
    error_code ec;
    auto ep = stream_.lowest_layer().remote_endpoint(ec);
    if (!ec) {
      auto a = ep.address();
      if (a.is_v6() && a.to_v6().is_v4_mapped())
        a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
      client_ip_ = a.to_string();
    }
  }
  ~downstream() override {
    finish_all();
    calls_.clear();  // resets their upstream streams
    worker_->sessions.erase(this);
    g_active.fetch_sub(1, std::memory_order_relaxed);
    active_of(worker_->index).fetch_sub(1, std::memory_order_relaxed);
    // Counted open by the HTTP/1.1 session that handed the connection over.
    if (worker_->metrics) worker_->metrics->on_connection_close(conn_slot_);
  }

  void start(std::string initial) {
    auto self = shared_from_this();
    start_io(self, std::move(initial));
    asio::co_spawn(stream_.get_executor(), watchdog(self), asio::detached);
    if (worker_->draining) drain();
  }

  void drain() {
    draining_ = true;
    h2_.goaway(error::no_error);
    kick();
  }

  // Answers a call locally (no upstream, or the upstream failed): trailers-only for gRPC.
  void fail(call& c, int grpc_status, unsigned http_status, std::string_view message);
  void respond_direct(call& c, unsigned status, std::string_view body,
                      std::string_view content_type);
  void start_attempt(call& c);
  worker& work() { return *worker_; }
  // The stream is over: one access log line and one metrics sample (once per call).
  void finish(call& c);

  // ---- session_handler ----
  void on_headers(std::int32_t id, header_list& headers, bool trailers, bool end) override;
  void on_data(std::int32_t id, std::span<const std::uint8_t> data) override;
  void on_end_stream(std::int32_t id) override;
  void on_stream_close(std::int32_t id, std::uint32_t code) override;
  void on_data_sent(std::int32_t id, std::size_t n) override;

 private:
  void on_closed() override {
    tick_.cancel();
    finish_all();
    calls_.clear();
  }
  void finish_all() {
    for (auto& [id, c] : calls_) finish(*c);
  }
  bool done() const override { return draining_ && h2_.open_streams() == 0; }
  call* find(std::int32_t id) {
    auto it = calls_.find(id);
    return it == calls_.end() ? nullptr : it->second.get();
  }
  void route(call& c);
  void start_http1(call& c);
  bool drop_underscored(call& c);  // false: the call was answered (reject)
  void arm_deadline(call& c, std::chrono::milliseconds d);

  asio::awaitable<void> watchdog(std::shared_ptr<downstream> self) {
    while (!closed()) {
      tick_.expires_after(1s);
      co_await tick_.async_wait(use_tuple);
      if (closed()) break;
      auto now = steady::now();
      if (!draining_ && ((idle_timeout_ > 0ms && h2_.open_streams() == 0 &&
                          now - last_active_ >= idle_timeout_) ||
                         now >= retire_at_))
        drain();  // graceful GOAWAY: open streams finish, then the connection closes
      if (draining_) kick();
    }
  }

  std::shared_ptr<const http::listener_state> listener_;
  std::shared_ptr<worker> worker_;
  std::unordered_map<std::int32_t, std::unique_ptr<call>> calls_;
  asio::steady_timer tick_;
  std::chrono::milliseconds idle_timeout_{0};
  steady::time_point retire_at_ = steady::time_point::max();  // max_connection_age
  bool draining_ = false;
  std::string client_ip_;  // X-Forwarded-For toward HTTP/1.1 upstreams
  std::size_t conn_slot_;  // the listener slot the connection was counted open on
};

// ---------------------------------------------------------------------------------------------

call::~call() {
  detach_upstream(true);
  lease.release();
  if (h1) {
    // Closes the upstream connection unless the exchange is over; body bytes it held are
    // released from the connection window (the stream's own window is gone with it).
    if (auto n = h1->detach(); n > 0 && down) down->h2().consume(down_id, n);
  }
}

void call::detach_upstream(bool reset) {
  if (!up) return;
  if (up_id > 0) {
    up->forget_stream(up_id);
    if (reset && !upstream_done && !up->closed()) {
      up->h2().reset(up_id, error::cancel);
      up->kick();
    }
  } else {
    up->forget_waiting(this);
  }
  up.reset();
  up_id = -1;
}

std::shared_ptr<upstream> worker::connection_for(asio::any_io_executor ex, core::backend& b,
                                                 const config::cluster& cfg) {
  std::shared_ptr<asio::ssl::context> tls;
  std::string key = b.name();
  if (cfg.protocol == config::upstream_protocol::h2) {
    // Keyed by the TLS settings too: clusters sharing a backend share only like connections.
    std::string tls_key;
    tls = client_tls_context(cfg, tls_key);
    if (!tls) return nullptr;
    key += '|';
    key += tls_key;
  }
  auto& list = conns[key];
  for (auto& weak : list)
    if (auto u = weak.lock(); u && u->usable()) return u;
  auto u = std::make_shared<upstream>(ex, b, cfg, tl_worker, key, std::move(tls));
  list.push_back(u);
  u->start();
  return u;
}

void worker::forget(upstream* u, const std::string& backend) {
  auto it = conns.find(backend);
  if (it == conns.end()) return;
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [u](auto& p) { auto l = p.lock(); return !l || l.get() == u; }),
             list.end());
  if (list.empty()) conns.erase(it);
}

// ---- upstream ------------------------------------------------------------------------------

asio::awaitable<void> upstream::connect(std::shared_ptr<upstream> self) {
  asio::steady_timer timer(stream_.get_executor());
  bool timed_out = false;
  if (connect_timeout_ > 0ms) {
    timer.expires_after(connect_timeout_);
    timer.async_wait([this, &timed_out](error_code ec) {
      if (ec) return;
      timed_out = true;
      error_code ignored;
      net::cancel_io(stream_.lowest_layer(), ignored);
    });
  }
  auto [ec] = co_await stream_.lowest_layer().async_connect(endpoint_of(addr_), use_tuple);
  if (ec) {
    timer.cancel();
    log_warn("upstream " + backend_name_ + " h2 connect " +
             (timed_out ? std::string("timed out") : "failed: " + ec.message()));
    connect_failed();
    co_return;
  }
  error_code ignored;
  stream_.lowest_layer().set_option(tcp::no_delay(true), ignored);
  net::enable_inq(stream_.lowest_layer());
  // TLS (protocol h2): the handshake counts against the connect timeout.
  bool tls_ok = !tls_ctx_ || co_await handshake();
  timer.cancel();
  if (!tls_ok) {
    if (timed_out) log_warn("upstream " + backend_name_ + " TLS handshake timed out");
    connect_failed();
    co_return;
  }
  ready_ = true;
  start_io(self);
  if (idle_timeout_ > 0ms) asio::co_spawn(stream_.get_executor(), idle_watch(self), asio::detached);
  auto waiting = std::move(waiting_calls_);
  waiting_calls_.clear();
  for (call* c : waiting) submit(*c);
  kick();
}

asio::awaitable<bool> upstream::handshake() {
  co_return co_await client_tls_handshake(stream_.use_tls(*tls_ctx_), tls_peer_, backend_name_);
}

void upstream::connect_failed() {
  failed_ = true;
  auto self = shared_from_this();
  worker_->forget(this, key_);
  auto waiting = std::move(waiting_calls_);
  waiting_calls_.clear();
  for (call* c : waiting) {
    c->lease.report(pool::outcome::connect_failure);
    if (worker_->metrics) worker_->metrics->on_connect_failure(c->metrics_cluster);
    c->lease.release();
    c->up.reset();
    c->down->start_attempt(*c);  // another backend, within max_tries
  }
}

void upstream::submit(call& c) {
  header_list h;
  h.reserve(c.request.size());
  for (auto& f : c.request)
    if (!hop_by_hop(f)) h.push_back(f);
  bool end = c.request_ended && c.pending.empty() && c.request_trailers.empty();
  auto id = h2_.submit_request(h, end);
  if (id < 0) {
    c.up.reset();
    c.down->fail(c, grpc_unavailable, 502, "upstream connection refused a new stream");
    return;
  }
  c.up_id = id;
  calls_[id] = &c;
  if (auto* b = c.lease.get()) b->stats().requests.fetch_add(1, std::memory_order_relaxed);
  if (!end) {
    if (!c.pending.empty()) {
      h2_.send_data(id, c.pending);
      c.body_pushed += c.pending.size();
      std::string().swap(c.pending);
    }
    if (c.request_ended) h2_.end_stream(id, c.request_trailers.empty() ? nullptr : &c.request_trailers);
  }
  kick();
}

void upstream::on_headers(std::int32_t id, header_list& headers, bool trailers, bool end) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  call& c = *it->second;
  auto status = find_header(headers, ":status");
  bool informational = !status.empty() && status[0] == '1';
  if (informational) return;  // 1xx: nothing to relay for gRPC; the final answer follows
  if (int g = grpc_status_of(headers); g >= 0) c.grpc_status = g;
  if (!c.response_started && (!trailers || !status.empty())) {
    c.response_started = true;
    c.status = status_of(status);
    c.answered = c.lease.get();
    if (!c.grpc && status.size() == 3 && status[0] == '5')
      c.lease.report(pool::outcome::http_5xx);
    header_list h;
    h.reserve(headers.size());
    for (auto& f : headers)
      if (!hop_by_hop(f)) h.push_back(std::move(f));
    c.down->h2().submit_response(c.down_id, h, end);
    if (end) c.response_ended = true;
  } else if (!c.response_ended) {
    // Trailers: end the downstream stream after the body.
    header_list h;
    for (auto& f : headers)
      if (!hop_by_hop(f)) h.push_back(std::move(f));
    c.down->h2().end_stream(c.down_id, &h);
    c.response_ended = true;
  }
  c.down->kick();
}

void upstream::on_data(std::int32_t id, std::span<const std::uint8_t> data) {
  auto it = calls_.find(id);
  if (it == calls_.end() || it->second->response_ended) {
    h2_.consume(id, data.size());  // nobody wants it: keep the connection window open
    return;
  }
  call& c = *it->second;
  // Consumed upstream only as the downstream takes it (on_data_sent there).
  if (!c.down->h2().send_data(c.down_id, data)) {
    h2_.consume(id, data.size());
    return;
  }
  c.bytes_out += data.size();
  c.down->kick();
}

void upstream::on_end_stream(std::int32_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  call& c = *it->second;
  if (!c.response_ended && c.response_started) {
    c.down->h2().end_stream(c.down_id);
    c.response_ended = true;
    c.down->kick();
  }
}

void upstream::on_stream_close(std::int32_t id, std::uint32_t code) {
  auto it = calls_.find(id);
  if (it == calls_.end()) {
    check_idle_drained();
    return;
  }
  call& c = *it->second;
  calls_.erase(it);
  c.upstream_done = true;
  c.up_id = -1;
  c.up.reset();
  c.upstream_over();
  if (c.response_ended) {
    c.lease.report(pool::outcome::success);
    c.lease.release();
  } else if (code == error::refused_stream && !c.response_started && c.replayable &&
             ++c.refusals <= 3) {
    // Not processed by the upstream (RFC 9113 section 8.7): safe to try elsewhere.
    c.lease.release();
    c.upstream_done = false;
    c.pending = c.replay;
    c.body_pushed = 0;
    --c.tries;  // a refusal is not a failed try
    c.tried[c.tries] = nullptr;
    c.down->start_attempt(c);
  } else {
    c.lease.report(pool::outcome::reset);
    c.lease.release();
    c.down->fail(c, grpc_unavailable, 502, "upstream reset the stream");
  }
  check_idle_drained();
}

void upstream::on_data_sent(std::int32_t id, std::size_t n) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  call& c = *it->second;
  // A replayed body is sent twice but was received (and is acknowledged) once.
  std::size_t ack = std::min(n, c.unconsumed);
  c.unconsumed -= ack;
  c.down->h2().consume(c.down_id, ack);
  c.down->kick();
}

void upstream::on_closed() {
  auto self = shared_from_this();
  tick_.cancel();
  worker_->forget(this, key_);
  if (!ready_) return;  // connect_failed() handled the waiting calls
  auto calls = std::move(calls_);
  calls_.clear();
  for (auto& [id, c] : calls) {
    c->upstream_done = true;
    c->up_id = -1;
    c->up.reset();
    c->upstream_over();
    if (c->response_ended) {
      c->lease.report(pool::outcome::success);
      c->lease.release();
      continue;
    }
    c->lease.report(pool::outcome::reset);
    c->lease.release();
    c->down->fail(*c, grpc_unavailable, 502, "upstream connection lost");
  }
}

// ---- downstream ----------------------------------------------------------------------------

void downstream::on_headers(std::int32_t id, header_list& headers, bool trailers, bool end) {
  if (trailers) {
    call* c = find(id);
    if (!c || c->request_ended) return;
    c->request_ended = true;
    c->bytes_in += field_bytes(headers);
    if (c->h1) {
      if (!c->upstream_done) c->h1->end_body(&headers);
      return;
    }
    if (c->up && c->up_id > 0) {
      header_list h;
      for (auto& f : headers)
        if (!hop_by_hop(f)) h.push_back(std::move(f));
      c->up->h2().end_stream(c->up_id, &h);
      c->up->kick();
    } else {
      for (auto& f : headers)
        if (!hop_by_hop(f)) c->request_trailers.push_back(std::move(f));
    }
    return;
  }
  auto owned = std::make_unique<call>();
  call& c = *owned;
  c.down = this;
  c.down_id = id;
  c.request = std::move(headers);
  c.request_ended = end;
  c.start = steady::now();
  c.log_time = std::chrono::system_clock::now();
  c.bytes_in = field_bytes(c.request);
  auto ct = find_header(c.request, "content-type");
  c.grpc = grpc::is_grpc(ct);
  calls_[id] = std::move(owned);
  route(c);
}

void downstream::route(call& c) {
  std::string_view authority = find_header(c.request, ":authority");
  if (authority.empty()) authority = find_header(c.request, "host");
  std::string_view path = find_header(c.request, ":path");
  // A reloaded configuration applies to the streams opened after it.
  if (const auto& cur = http::current_listener(listener_->index); cur && cur != listener_)
    listener_ = cur;
  const auto& l = *listener_;
  int idx = l.routes ? l.routes->match(authority, path) : -1;
  if (idx >= 0 && static_cast<std::size_t>(idx) < l.route_metrics.size())
    c.metrics_route = l.route_metrics[static_cast<std::size_t>(idx)];
  if (idx < 0) {
    if (c.grpc) fail(c, grpc_unimplemented, 404, "no route");
    else respond_direct(c, 404, "no route\n", "text/plain");
    return;
  }
  const auto& r = l.cfg->routes[static_cast<std::size_t>(idx)];
  if (r.direct) {
    respond_direct(c, r.direct->status, r.direct->body, r.direct->content_type);
    return;
  }
  int ci = static_cast<std::size_t>(idx) < l.route_cluster.size()
               ? l.route_cluster[static_cast<std::size_t>(idx)]
               : -1;
  if (ci < 0 || static_cast<std::size_t>(ci) >= l.clusters.size()) {
    fail(c, grpc_unavailable, 500, "route has no cluster");
    return;
  }
  c.cluster = l.clusters[static_cast<std::size_t>(ci)];
  c.metrics_cluster = static_cast<int>(c.cluster->metrics_slot());
  const auto& cfg = c.cluster->config();
  if (cfg.protocol == config::upstream_protocol::http1) {
    if (c.grpc) {  // gRPC needs trailers end to end: HTTP/1.1 backends do not serve it
      log_warn("cluster " + cfg.name + ": gRPC call routed to an http1 cluster (needs protocol h2c or h2)");
      fail(c, grpc_unavailable, 502, "gRPC needs an HTTP/2 cluster");
      return;
    }
    start_http1(c);  // translated onto HTTP/1.1 (src/h2/http1_bridge.cpp)
    return;
  }
  if (!drop_underscored(c)) return;
  if (auto t = find_header(c.request, "grpc-timeout"); c.grpc && !t.empty()) {
    if (auto d = grpc::parse_timeout(t)) arm_deadline(c, *d);
  }
  if (cfg.policy == config::policy_kind::ring_hash)
    c.hash = request_hash(cfg.hash, c.request, client_ip_);
  start_attempt(c);
}

// Fields with `_` in their name, as on HTTP/1.1 listeners (`headers_with_underscores`); the
// HTTP/1.1 bridge applies the same rule while translating.
bool downstream::drop_underscored(call& c) {
  using action = config::listener_limits::underscore_action;
  auto act = listener_->cfg->limits.underscores;
  if (act == action::allow) return true;
  auto underscored = [](const header& f) {
    return !f.name.empty() && f.name[0] != ':' && f.name.find('_') != std::string::npos;
  };
  if (act == action::reject) {
    if (std::none_of(c.request.begin(), c.request.end(), underscored)) return true;
    fail(c, grpc_internal, 400, "header field name with an underscore");
    return false;
  }
  std::erase_if(c.request, underscored);
  return true;
}

void downstream::start_http1(call& c) {
  http1_params p;
  p.cluster = c.cluster;
  p.cache = &c.cluster->cache(worker_->index);
  p.pool = worker_->http1(stream_.get_executor());
  p.forward.client_ip = client_ip_;
  p.forward.proto = stream_.is_tls() ? "https" : "http";
  p.forward.forwarded = listener_->cfg->forwarded;
  p.forward.underscores = listener_->cfg->limits.underscores;
  p.send_timeout = listener_->cfg->timeouts.send;
  auto x = http1_exchange::start(stream_.get_executor(), c.request, c.request_ended, std::move(p), c);
  c.h1 = std::move(x);
}

void downstream::arm_deadline(call& c, std::chrono::milliseconds d) {
  c.deadline = std::make_unique<asio::steady_timer>(stream_.get_executor());
  c.deadline->expires_after(d);
  std::weak_ptr<downstream> weak = shared_from_this();
  c.deadline->async_wait([weak, id = c.down_id](error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    call* c = self->find(id);
    if (!c || c->response_ended) return;
    if (c->lease) c->lease.report(pool::outcome::timeout);
    c->detach_upstream(true);
    c->lease.release();
    self->fail(*c, grpc_deadline_exceeded, 504, "deadline exceeded");
  });
}

void downstream::start_attempt(call& c) {
  auto& w = *worker_;
  auto& cache = c.cluster->cache(w.index);
  const auto& cfg = cache.owner().config();
  unsigned max_tries = std::clamp<unsigned>(cfg.max_tries, 1, static_cast<unsigned>(c.tried.size()));
  if (c.tries >= max_tries) {
    fail(c, grpc_unavailable, 502, "no upstream could be reached");
    return;
  }
  // The previous attempt's backends may go with its snapshot.
  c.attempt_backend = c.answered = nullptr;
  c.snap = cache.hold();
  balance::pick_context ctx;
  ctx.hash = c.hash;
  ctx.exclude = std::span<core::backend* const>(c.tried.data(), c.tries);
  core::backend* b = c.snap->pick(ctx);
  if (!b || ctx.excluded(b)) {
    if (c.tries == 0) log_warn("no backend available in cluster " + cfg.name);
    fail(c, grpc_unavailable, 503, "no healthy upstream");
    return;
  }
  if (c.tries > 0 && w.metrics) w.metrics->on_retry(c.metrics_cluster);
  c.tried[c.tries++] = b;
  c.begin_attempt(b);
  c.lease = pool::lease(*b);
  auto u = w.connection_for(stream_.get_executor(), *b, cfg);
  if (!u) {
    c.lease.release();
    fail(c, grpc_unavailable, 502, "no TLS toward the upstream (see the error log)");
    return;
  }
  u->enqueue(c);
}

void downstream::fail(call& c, int grpc_status, unsigned http_status, std::string_view message) {
  c.upstream_over();
  c.detach_upstream(true);
  c.lease.release();
  c.upstream_done = true;
  if (c.deadline) c.deadline->cancel();
  if (c.response_ended) return;
  if (c.response_started) {
    if (c.grpc) {
      header_list t{{"grpc-status", std::to_string(grpc_status)},
                    {"grpc-message", std::string(message)}};
      if (!h2_.end_stream(c.down_id, &t)) h2_.reset(c.down_id, error::internal_error);
      else c.grpc_status = grpc_status;
    } else {
      h2_.reset(c.down_id, error::internal_error);
    }
    c.response_ended = true;
    kick();
    return;
  }
  if (c.grpc) {
    c.response_started = c.response_ended = true;
    c.status = 200;
    c.grpc_status = grpc_status;
    header_list h{{":status", "200"},
                  {"content-type", "application/grpc"},
                  {"grpc-status", std::to_string(grpc_status)},
                  {"grpc-message", std::string(message)}};
    h2_.submit_response(c.down_id, h, true);
    kick();
    return;
  }
  respond_direct(c, http_status, std::string(message) + "\n", "text/plain");
}

void downstream::respond_direct(call& c, unsigned status, std::string_view body,
                                std::string_view content_type) {
  c.response_started = c.response_ended = true;
  c.upstream_done = true;
  c.status = status;
  header_list h{{":status", std::to_string(status)},
                {"content-type", std::string(content_type)},
                {"content-length", std::to_string(body.size())}};
  bool empty = body.empty() || find_header(c.request, ":method") == "HEAD";
  h2_.submit_response(c.down_id, h, empty);
  if (!empty) {
    h2_.send_data(c.down_id, body);
    h2_.end_stream(c.down_id);
    c.bytes_out += body.size();
  }
  kick();
}

void downstream::finish(call& c) {
  if (c.recorded) return;
  c.recorded = true;
  c.upstream_over();
  auto& w = *worker_;
  const auto now = steady::now();
  if (w.metrics) {
    const auto up = c.up_seconds >= 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::duration<double>(c.up_seconds))
                                      : std::chrono::nanoseconds{0};
    w.metrics->on_request(listener_->index, c.metrics_cluster, c.answered, c.status,
                          now - c.start, up, c.bytes_in, c.bytes_out, c.metrics_route);
  }
  if (w.access_log && w.access_log->enabled()) {
    log::access_entry e;
    e.client_ip = client_ip_;
    e.time = c.log_time;
    e.method = find_header(c.request, ":method");
    e.target = find_header(c.request, ":path");
    e.version = 20;
    e.status = c.status;
    e.grpc_status = c.grpc_status;
    e.body_bytes_sent = c.bytes_out;
    e.referer = find_header(c.request, "referer");
    e.user_agent = find_header(c.request, "user-agent");
    if (c.attempt_backend) e.upstream_addr = c.attempt_backend->name();
    e.upstream_seconds = c.up_seconds;
    e.request_seconds = std::chrono::duration<double>(now - c.start).count();
    w.access_log->append(e);
  }
}

void downstream::on_data(std::int32_t id, std::span<const std::uint8_t> data) {
  call* c = find(id);
  if (c) c->bytes_in += data.size();
  if (!c || c->upstream_done || c->request_ended) {
    h2_.consume(id, data.size());
    return;
  }
  if (c->h1) {
    c->h1->push_body(data);  // acknowledged as it reaches the upstream (on_request_consumed)
    return;
  }
  c->unconsumed += data.size();
  if (c->replayable) {
    if (c->replay.size() + data.size() <= replay_limit)
      c->replay.append(reinterpret_cast<const char*>(data.data()), data.size());
    else {
      c->replayable = false;
      std::string().swap(c->replay);
    }
  }
  if (c->up && c->up_id > 0) {
    // Consumed here only once the upstream takes it (upstream::on_data_sent).
    if (!c->up->h2().send_data(c->up_id, data)) {
      h2_.consume(id, data.size());
      c->unconsumed -= data.size();
      return;
    }
    c->body_pushed += data.size();
    c->up->kick();
  } else {
    c->pending.append(reinterpret_cast<const char*>(data.data()), data.size());
  }
}

void downstream::on_end_stream(std::int32_t id) {
  call* c = find(id);
  if (!c || c->request_ended) {
    if (c) c->request_ended = true;
    return;
  }
  c->request_ended = true;
  if (c->h1) {
    if (!c->upstream_done) c->h1->end_body(nullptr);
    return;
  }
  if (c->up && c->up_id > 0 && !c->upstream_done) {
    c->up->h2().end_stream(c->up_id);
    c->up->kick();
  }
}

void downstream::on_stream_close(std::int32_t id, std::uint32_t code) {
  auto it = calls_.find(id);
  if (it != calls_.end()) {
    // A client RST_STREAM (or our own reset) cancels the upstream stream; ~call does it.
    auto c = std::move(it->second);
    calls_.erase(it);
    finish(*c);
  }
  if (draining_) kick();
}

void downstream::on_data_sent(std::int32_t id, std::size_t n) {
  call* c = find(id);
  if (c && c->h1) {
    c->h1->wake();  // the exchange may read more of the upstream response
    return;
  }
  if (!c || !c->up || c->up_id <= 0) return;
  c->up->h2().consume(c->up_id, n);
  c->up->kick();
}

// ---- call as the port of an HTTP/1.1 exchange ----------------------------------------------

void call::on_attempt(core::backend* b, const std::shared_ptr<const pool::snapshot>& s) {
  snap = s;
  begin_attempt(b);
}

void call::on_response(header_list& headers, bool end_stream) {
  response_started = true;
  status = status_of(find_header(headers, ":status"));
  answered = attempt_backend;
  if (end_stream) upstream_over();
  down->h2().submit_response(down_id, headers, end_stream);
  if (end_stream) response_ended = upstream_done = true;
  down->kick();
}

void call::on_response_data(std::span<const std::uint8_t> data) {
  if (down->h2().send_data(down_id, data)) bytes_out += data.size();
  down->kick();
}

void call::on_response_end(const header_list* trailers) {
  upstream_done = true;
  upstream_over();
  if (response_ended) return;
  response_ended = true;
  down->h2().end_stream(down_id, trailers);
  down->kick();
}

std::size_t call::response_queued() { return down->h2().outbound_size(down_id); }

void call::on_request_consumed(std::size_t n) {
  down->h2().consume(down_id, n);
  down->kick();
}

void call::on_failure(unsigned status, std::string_view message) {
  down->fail(*this, status == 504 ? grpc_deadline_exceeded : grpc_unavailable, status, message);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace {

void start_downstream(net::downstream_stream stream, std::string_view already_read,
                      std::shared_ptr<const http::listener_state> listener, unsigned worker_index,
                      const observers& obs) {
  auto& w = worker_for(worker_index);  // this thread's worker state, in tl_worker
  if (w.observers_owner != obs.owner || w.metrics != obs.metrics ||
      w.access_log != obs.access_log) {
    w.metrics = obs.metrics;
    w.access_log = obs.access_log;
    w.observers_owner = obs.owner;
  }
  if (!listener || !listener->cfg) {
    if (listener && w.metrics) w.metrics->on_connection_close(listener->index);
    return;
  }
  error_code ec;
  stream.lowest_layer().set_option(tcp::no_delay(true), ec);
  const auto& o = listener->cfg->http2;
  settings st;
  st.max_concurrent_streams = o.max_concurrent_streams;
  st.max_header_list_size = o.max_header_list_size;
  st.initial_window_size = o.stream_window;
  st.connection_window_size = std::max<std::uint32_t>(o.stream_window, 4 * 1024 * 1024);
  st.reset_burst = o.reset_burst;
  st.reset_rate = o.reset_rate;
  auto d = std::make_shared<downstream>(std::move(stream), std::move(listener), tl_worker, st);
  d->start(std::string(already_read));
}

}  // namespace

void start_server_session(tcp::socket socket, std::string_view already_read,
                          std::shared_ptr<const http::listener_state> listener,
                          unsigned worker_index, const observers& obs) {
  start_downstream(net::downstream_stream(std::move(socket)), already_read, std::move(listener),
                   worker_index, obs);
}

void start_server_session(asio::ssl::stream<tcp::socket> stream, std::string_view already_read,
                          std::shared_ptr<const http::listener_state> listener,
                          unsigned worker_index, const observers& obs) {
  start_downstream(net::downstream_stream(std::move(stream)), already_read, std::move(listener),
                   worker_index, obs);
}

void drain() {
  if (!tl_worker) return;
  tl_worker->draining = true;
  if (tl_worker->h1_pool) tl_worker->h1_pool->close();
  std::vector<downstream*> list(tl_worker->sessions.begin(), tl_worker->sessions.end());
  for (auto* d : list) d->drain();
}

std::size_t active_sessions() noexcept { return g_active.load(std::memory_order_relaxed); }

std::size_t active_sessions(unsigned worker) noexcept {
  return active_of(worker).load(std::memory_order_relaxed);
}

}  // namespace sluice::h2
