// The TCP session: limits, PROXY header / ClientHello preamble, upstream pick with failover,
// then a two-way relay (splice through pipes, buffers, or buffers first and splice once a
// direction carries bulk data) with half-close, reset propagation, idle timeout and max lifetime.
#include "l4/proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "net/relay_read.hpp"
#include "net/io_batch.hpp"
#include "net/socket_adopt.hpp"
#include "sluice/balance/policy.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/l4/client_hello.hpp"
#include "sluice/l4/proxy_protocol.hpp"
#include "sluice/log/log.hpp"
#include "sluice/pool/lease.hpp"

namespace sluice::l4 {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// How often a connection waiting for a limit slot looks again. Slots are freed by sessions on
// any worker, so polling is simpler than a cross-thread wake-up and bounded by queue_timeout.
constexpr auto queue_poll = std::chrono::milliseconds(10);
// Largest ClientHello we buffer: one full TLS record plus a second record's header. Larger
// hellos (rare) are routed to the fallback cluster.
constexpr std::size_t client_hello_max = 16384 + 5 + 1024;
constexpr std::size_t max_pooled_pipes = 32;
constexpr std::size_t max_pooled_buffers = 32;
// relay: auto moves a direction from buffered copying to splice(2) once it has carried this
// many bytes: short request/response connections never touch a pipe, bulk transfers do.
constexpr std::uint64_t splice_after = 65536;

struct pipe_pair {
  int r = -1;
  int w = -1;
  std::size_t size = 0;
};

void close_pipe(pipe_pair& p) noexcept {
  if (p.r >= 0) ::close(p.r);
  if (p.w >= 0) ::close(p.w);
  p = {};
}

}  // namespace

class worker_state {
 public:
  worker_state(asio::io_context& io, std::shared_ptr<metrics::registry> metrics,
               unsigned worker_index)
      : io_(io),
        index_(worker_index),
        registry_(std::move(metrics)),
        shard_(registry_ ? &registry_->shard(worker_index) : nullptr) {}
  ~worker_state() {
    for (auto& p : pipes_) close_pipe(p);
  }

  // A relay buffer of `size` bytes, reused across connections: allocating and freeing 64 KiB
  // per connection and direction shows up as malloc, page faults and heap trimming.
  std::unique_ptr<std::uint8_t[]> get_buffer(std::size_t size) {
    if (!buffers_.empty() && buffer_size_ == size) {
      auto b = std::move(buffers_.back());
      buffers_.pop_back();
      return b;
    }
    return std::unique_ptr<std::uint8_t[]>(new std::uint8_t[size]);
  }
  void put_buffer(std::unique_ptr<std::uint8_t[]> b, std::size_t size) {
    if (!b) return;
    if (buffer_size_ != size) {  // listeners with another buffer_size: keep one size pooled
      if (!buffers_.empty()) return;
      buffer_size_ = size;
    }
    if (buffers_.size() < max_pooled_buffers) buffers_.push_back(std::move(b));
  }

  // An empty pipe of (about) `size` bytes, reused when possible. False when none can be made
  // (out of descriptors): the caller falls back to buffered copying.
  bool get_pipe(pipe_pair& out, std::size_t size) {
    if (!pipes_.empty()) {
      out = pipes_.back();
      pipes_.pop_back();
    } else {
      int fds[2];
      if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
      out = {fds[0], fds[1], 0};
    }
    if (out.size != size) {
      // Over the per-user pipe budget F_SETPIPE_SZ fails; keep whatever size the pipe has.
      ::fcntl(out.w, F_SETPIPE_SZ, static_cast<int>(size));
      int got = ::fcntl(out.w, F_GETPIPE_SZ);
      out.size = got > 0 ? static_cast<std::size_t>(got) : 4096;
      if (out.size > size) out.size = size;
    }
    return true;
  }
  // Returns a pipe to the pool when it holds no data, else closes it.
  void put_pipe(pipe_pair& p, bool empty) {
    if (p.r < 0) return;
    if (empty && pipes_.size() < max_pooled_pipes) {
      pipes_.push_back(p);
      p = {};
    } else {
      close_pipe(p);
    }
  }

  asio::io_context& io_;
  unsigned index_;  // the worker's number: its snapshot caches
  std::shared_ptr<metrics::registry> registry_;  // keeps the shard alive
  metrics::worker_shard* shard_;                 // this worker's shard, or null
  std::vector<pipe_pair> pipes_;
  std::vector<std::unique_ptr<std::uint8_t[]>> buffers_;
  std::size_t buffer_size_ = 0;  // size of every buffer in buffers_
  std::atomic<std::size_t> active_{0};
  bool draining_ = false;
};

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, std::shared_ptr<const listener_state> listener,
          std::shared_ptr<worker_state> worker)
      : listener_(std::move(listener)),
        worker_(std::move(worker)),
        opts_(listener_->cfg->tcp),
        stats_(*listener_->stats),
        shard_(worker_->shard_),
        index_(listener_->index),
        down_(std::move(socket)),
        up_(worker_->io_),
        timer_(worker_->io_),
        started_(steady::now()) {
    worker_->active_.fetch_add(1, std::memory_order_relaxed);
    if (shard_) shard_->on_connection_open(index_);
  }

  ~session() {
    for (auto& d : dirs_) {
      worker_->put_pipe(d.pipe, d.in_pipe == 0);
      worker_->put_buffer(std::move(d.buf), opts_.buffer_size);
    }
    if (holding_slot_) stats_.active.fetch_sub(1, std::memory_order_relaxed);
    if (shard_) shard_->on_connection_close(index_);
    worker_->active_.fetch_sub(1, std::memory_order_relaxed);
  }

  // The session's coroutine, up to the relay; `self` keeps the session alive. Each awaitable
  // frame costs an allocation (Asio recycles only small frames, two at a time), so this is the
  // only one on a short connection's common path: helpers that usually finish at once are
  // plain functions with a coroutine for the rare wait (slot queueing, a connect still in
  // progress), and the buffered relay is a chain of completion handlers.
  static asio::awaitable<void> run(std::shared_ptr<session> self) {
    session& s = *self;
    return s.serve(std::move(self));
  }

 private:
  enum class phase { queue, preamble, connect, relay, done };

  // One direction of the relay.
  struct direction {
    tcp::socket* src = nullptr;
    tcp::socket* dst = nullptr;
    pipe_pair pipe;
    std::size_t in_pipe = 0;
    std::atomic<std::uint64_t>* backend_bytes = nullptr;
    bool upstream_src = false;  // true for upstream → downstream
    bool fin_passed = false;    // the source's FIN was passed on: this direction is over
    // Buffered relaying: the (pooled) buffer, bytes moved so far, and whether relay: auto
    // may still switch the direction to splice.
    std::unique_ptr<std::uint8_t[]> buf;
    std::uint64_t moved = 0;
    bool may_splice = false;
    net::queued left = net::queued::unknown;  // behind the last read (TCP_INQ): data or a FIN?
  };

  asio::awaitable<void> serve(std::shared_ptr<session> self) {
    if (!try_reserve_listener_slot() && !co_await wait_listener_slot()) co_return;

    error_code ec;  // (TCP_NODELAY comes from the listening socket)
    // The peer address is read only when something needs it (PROXY protocol, ring_hash).
    if (opts_.proxy.accept || opts_.proxy.send != config::proxy_protocol::version::none) {
      if (!load_peer()) co_return;  // already gone
    }
    if (opts_.proxy.send != config::proxy_protocol::version::none) {
      socklen_t len = sizeof local_;
      ::getsockname(down_.native_handle(), reinterpret_cast<sockaddr*>(&local_), &len);
    }

    int cluster = listener_->cluster;
    const bool want_proxy = opts_.proxy.accept && trusted(reinterpret_cast<const sockaddr*>(&client_));
    const bool want_sni = listener_->sni != nullptr;
    if (want_proxy || want_sni) {
      phase_ = phase::preamble;
      if (!co_await read_preamble(want_proxy, want_sni, cluster)) co_return;
    }
    if (cluster < 0 || static_cast<std::size_t>(cluster) >= listener_->clusters.size()) {
      stats_.on_close(metrics::tcp_close_reason::no_backend);
      co_return;
    }

    phase_ = phase::connect;
    upstream_attempts attempts;
    if (!begin_attempts(cluster, attempts)) co_return;
    attempt outcome = next_attempt(attempts);
    if (outcome == attempt::wait_connect || outcome == attempt::wait_queue)
      outcome = co_await wait_attempts(attempts, outcome);
    if (outcome != attempt::connected) co_return;

    // From here on the watchdog covers everything, including the first write upstream.
    phase_ = phase::relay;
    last_activity_ = core::coarse_now();
    arm_watchdog();

    std::array<std::uint8_t, proxy_v1_max> header;
    std::size_t header_len = 0;
    if (opts_.proxy.send == config::proxy_protocol::version::v1)
      header_len = encode_proxy_v1(reinterpret_cast<const sockaddr*>(&client_),
                                   reinterpret_cast<const sockaddr*>(&local_), header);
    else if (opts_.proxy.send == config::proxy_protocol::version::v2)
      header_len = encode_proxy_v2(reinterpret_cast<const sockaddr*>(&client_),
                                   reinterpret_cast<const sockaddr*>(&local_), header);
    dirs_[0].src = &down_;
    dirs_[0].dst = &up_;
    dirs_[0].backend_bytes = &lease_.get()->stats().bytes_sent;
    dirs_[1].src = &up_;
    dirs_[1].dst = &down_;
    dirs_[1].backend_bytes = &lease_.get()->stats().bytes_received;
    dirs_[1].upstream_src = true;
    const std::size_t replay = pre_len_ - pre_off_;
    if (header_len + replay > 0) {
      std::array<asio::const_buffer, 2> bufs{asio::buffer(header.data(), header_len),
                                             asio::buffer(pre_.get() + pre_off_, replay)};
      auto [wec, n] = co_await asio::async_write(up_, bufs, use_tuple);
      if (aborted_) co_return;
      if (wec) {
        reset(down_);
        co_return;
      }
      count(dirs_[0], replay);
    }
    pre_.reset();

    const auto mode = opts_.relay;
    if (mode == config::tcp_options::relay_mode::splice && !make_non_blocking()) {
      close_all();
      co_return;
    }
    pumps_ = 2;
    start_pump(self, 0, mode);
    start_pump(std::move(self), 1, mode);
  }

  // splice(2) blocks on a socket without O_NONBLOCK (SPLICE_F_NONBLOCK covers only the pipe),
  // and Asio sets O_NONBLOCK lazily (on the first asynchronous operation): set it where Asio
  // has not yet, one ioctl per socket at most.
  bool make_non_blocking() {
    error_code ec;
    if (!down_.native_non_blocking()) down_.native_non_blocking(true, ec);
    if (!ec && !up_.native_non_blocking()) up_.native_non_blocking(true, ec);
    return !ec;
  }

  bool load_peer() {
    if (peer_known_) return true;
    socklen_t len = sizeof client_;
    if (::getpeername(down_.native_handle(), reinterpret_cast<sockaddr*>(&client_), &len) != 0)
      return false;
    peer_known_ = true;
    return true;
  }

  // ---- limits -------------------------------------------------------------------------------

  // Takes a slot under the listener's max_connections if one is free (or there is no limit).
  bool try_reserve_listener_slot() {
    auto& active = stats_.active;
    const std::uint64_t max = opts_.max_connections;
    if (max == 0) return true;  // no limit: no shared counter to touch
    std::uint64_t cur = active.load(std::memory_order_relaxed);
    while (cur < max) {
      if (active.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) {
        holding_slot_ = true;
        return true;
      }
    }
    return false;
  }

  // The listener is full: refuse, or queue until a slot frees up (false: refused, counted).
  asio::awaitable<bool> wait_listener_slot() {
    const auto deadline = steady::now() + opts_.queue_timeout;
    for (;;) {
      if (opts_.on_limit == config::tcp_options::limit_action::refuse ||
          steady::now() >= deadline || worker_->draining_ || !co_await queue_wait()) {
        stats_.on_close(metrics::tcp_close_reason::refused);
        co_return false;
      }
      if (try_reserve_listener_slot()) co_return true;
    }
  }

  // Waits one polling interval; false when the client went away or the worker drains.
  asio::awaitable<bool> queue_wait() {
    phase_ = phase::queue;
    timer_.expires_after(queue_poll);
    auto [ec] = co_await timer_.async_wait(use_tuple);
    co_return !ec && !worker_->draining_ && down_.is_open();
  }

  bool trusted(const sockaddr* sa) const noexcept {
    for (const auto& c : opts_.proxy.trusted)
      if (c.contains(sa)) return true;
    return false;
  }

  // ---- preamble: PROXY header from a trusted balancer, then the TLS ClientHello ------------

  asio::awaitable<bool> read_preamble(bool want_proxy, bool want_sni, int& cluster) {
    const std::size_t cap = (want_proxy ? proxy_v2_parse_max : 0) + (want_sni ? client_hello_max : 0);
    pre_.reset(new std::uint8_t[cap]);
    bool proxy_done = !want_proxy;
    timed_out_ = false;
    arm(opts_.header_timeout);
    bool ok = true;
    for (;;) {
      if (!proxy_done) {
        auto h = parse_proxy_header({pre_.get(), pre_len_});
        if (h.state == proxy_header::status::invalid) {
          SLUICE_LOG(debug, "listener " << listener_->cfg->name << ": malformed PROXY header, closing");
          ok = false;
          break;
        }
        if (h.state == proxy_header::status::complete) {
          proxy_done = true;
          pre_off_ = h.length;
          if (h.has_addresses) {
            client_ = h.source;
            local_ = h.destination;
          }
        }
      }
      if (proxy_done) {
        if (!want_sni) break;
        auto hello = parse_client_hello({pre_.get() + pre_off_, pre_len_ - pre_off_});
        if (hello.state == client_hello::status::complete) {
          cluster = listener_->sni->route(hello.server_name);
          break;
        }
        if (hello.state == client_hello::status::invalid) {
          cluster = listener_->sni->fallback();
          break;
        }
      }
      if (pre_len_ == cap) {
        if (!proxy_done) {
          ok = false;
        } else {
          cluster = listener_->sni->fallback();  // a ClientHello too large to inspect
        }
        break;
      }
      auto [ec, n] = co_await down_.async_read_some(
          asio::buffer(pre_.get() + pre_len_, cap - pre_len_), use_tuple);
      if (ec) {
        // A client that says nothing (server-speaks-first protocols) is routed by default
        // once the wait is over; one that leaves or errs mid-preamble is closed.
        if (timed_out_ && proxy_done && want_sni) {
          cluster = listener_->sni->fallback();
        } else {
          ok = false;
        }
        break;
      }
      pre_len_ += n;
    }
    disarm();
    if (!ok) stats_.on_close(metrics::tcp_close_reason::bad_preamble);
    // The socket may have been cancelled by the timer; it stays usable for the relay.
    co_return ok;
  }

  // ---- upstream: pick, connect, fail over ----------------------------------------------------

  // The upstream pick across attempts: backends tried (first) and found full (after them;
  // retried after a queue wait), and the attempt in progress.
  struct upstream_attempts {
    pool::cluster* cl = nullptr;
    const config::cluster* ccfg = nullptr;
    balance::pick_context ctx;
    std::array<core::backend*, 64> excluded{};
    std::size_t tried = 0;
    std::size_t full = 0;
    steady::time_point deadline;
    core::backend* backend = nullptr;  // the one being connected to
    pool::lease pending;               // its lease, until the outcome is known
  };
  enum class attempt { connected, failed, again, wait_connect, wait_queue };

  // Takes the cluster's snapshot. False when the client is already gone (ring_hash needs its
  // address).
  bool begin_attempts(int index, upstream_attempts& a) {
    auto& cl = *listener_->clusters[static_cast<std::size_t>(index)];
    auto& cache = cl.cache(worker_->index_);
    a.cl = &cl;
    a.ccfg = &cache.owner().config();
    snap_ = cache.hold();
    if (a.ccfg->policy == config::policy_kind::ring_hash) {
      if (!load_peer()) return false;
      a.ctx.hash = balance::hash_key(client_host());
    }
    a.deadline = steady::now() + opts_.queue_timeout;
    return true;
  }

  // Picks and connects until an upstream is connected (lease_ holds it), every choice failed
  // (counted), or an attempt has to wait: a handshake in progress, or every backend full with
  // on_limit: queue. Never suspends, so a connect that completes at once costs no coroutine.
  attempt next_attempt(upstream_attempts& a) {
    const std::uint32_t limit = a.ccfg->max_connections_per_backend;
    const bool queue = opts_.on_limit == config::tcp_options::limit_action::queue;
    for (;;) {
      a.ctx.exclude = {a.excluded.data(), a.tried + a.full};
      core::backend* b = snap_->pick(a.ctx);
      if (!b) {
        if (a.full > 0 && queue && steady::now() < a.deadline) return attempt::wait_queue;
        stats_.on_close(a.full > 0 && a.tried == 0 ? metrics::tcp_close_reason::refused
                                                   : metrics::tcp_close_reason::no_backend);
        return attempt::failed;
      }
      pool::lease l(*b);
      if (limit != 0 && b->active() > limit) {
        l.release();
        if (a.tried + a.full == a.excluded.size()) return attempt::failed;
        a.excluded[a.tried + a.full] = b;
        ++a.full;
        continue;
      }
      b->stats().requests.fetch_add(1, std::memory_order_relaxed);
      a.backend = b;
      a.pending = std::move(l);
      error_code ec;
      if (!start_connect(*b, ec)) return attempt::wait_connect;
      const attempt r = settle(a, ec);
      if (r != attempt::again) return r;
    }
  }

  // The outcome of the connect to a.backend: connected, failed for good, or try another.
  attempt settle(upstream_attempts& a, const error_code& ec) {
    if (!ec) {
      a.pending.report(pool::outcome::success);
      lease_ = std::move(a.pending);
      return attempt::connected;
    }
    core::backend* b = a.backend;
    a.pending.report(pool::outcome::connect_failure);
    a.pending.release();
    stats_.connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (shard_) shard_->on_connect_failure(static_cast<int>(a.cl->metrics_slot()));
    SLUICE_LOG(debug, "listener " << listener_->cfg->name << ": connect to " << b->name()
                                  << " failed: " << ec.message());
    // Keep tried ones in front of full ones.
    if (a.full > 0) a.excluded[a.tried + a.full] = a.excluded[a.tried];
    a.excluded[a.tried++] = b;
    if (a.tried >= a.ccfg->max_tries || a.tried + a.full >= a.excluded.size() || !down_.is_open()) {
      stats_.on_close(metrics::tcp_close_reason::no_backend);
      return attempt::failed;
    }
    return attempt::again;
  }

  // The attempts that wait (`r`: wait_connect or wait_queue), until connected or failed.
  asio::awaitable<attempt> wait_attempts(upstream_attempts& a, attempt r) {
    for (;;) {
      if (r == attempt::wait_queue) {
        if (!co_await queue_wait()) {
          stats_.on_close(a.tried == 0 ? metrics::tcp_close_reason::refused
                                       : metrics::tcp_close_reason::no_backend);
          co_return attempt::failed;
        }
        a.full = 0;
        phase_ = phase::connect;
      } else {
        const error_code ec = co_await wait_connected(a.ccfg->timeouts.connect);
        r = settle(a, ec);
        if (r != attempt::again) co_return r;
      }
      r = next_attempt(a);
      if (r == attempt::connected || r == attempt::failed) co_return r;
    }
  }

  // Starts connecting up_ to `b`. True when that is settled at once (`ec` says how), false
  // while the handshake is still in progress: then wait_connected() finishes it.
  bool start_connect(core::backend& b, error_code& ec) {
    // connect(2) by hand: async_connect would add a poll(2) on completion.
    const auto& a = b.addr();
    const auto* sa = reinterpret_cast<const sockaddr*>(&a.storage);
    up_.close(ec);  // a previous attempt's socket (failover); up_ stays usable for assign()
    ec = {};
    // Non-blocking from socket(2) on: no ioctl(FIONBIO), no explicit epoll removal at close.
    const int sfd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sfd < 0) {
      ec = error_code(errno, asio::error::get_system_category());
      return true;
    }
    net::adopt_nonblocking(up_, sa->sa_family == AF_INET6 ? tcp::v6() : tcp::v4(), sfd, ec);
    if (ec) {
      ::close(sfd);
      return true;
    }
    error_code ignored;
    up_.set_option(tcp::no_delay(true), ignored);
    // What is left to read after each relay read (accepted sockets inherit it from the
    // listener): lets the relay skip doomed reads and send a last answer with its FIN.
    net::enable_inq(up_);
    // The upstream has had no chance to send anything yet: the relay's first read from it
    // waits for epoll rather than trying recv(2) (one EAGAIN less per connection).
    net::expect_nothing_to_read(up_);
    const int fd = up_.native_handle();
    if (::connect(fd, sa, static_cast<socklen_t>(a.length)) == 0) return true;
    if (errno != EINPROGRESS && errno != EINTR) {
      ec = error_code(errno, asio::error::get_system_category());
      return true;
    }
    // Often (always on loopback) the handshake has completed by the time connect(2) returns:
    // a connected socket has a peer. That spares waiting for writability, which costs an
    // epoll_ctl (Asio adds EPOLLOUT on the first write wait), a loop through the reactor and
    // the SO_ERROR read. ENOTCONN: still in progress (or failing), so wait as usual.
    {
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) return true;
    }
    return false;
  }

  // Waits for the handshake start_connect() left in progress, up to `timeout`.
  asio::awaitable<error_code> wait_connected(config::duration timeout) {
    timed_out_ = false;
    arm(timeout);
    auto [wec] = co_await up_.async_wait(tcp::socket::wait_write, use_tuple);
    disarm();
    if (timed_out_) co_return asio::error::timed_out;
    if (wec) co_return wec;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(up_.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    co_return err ? error_code(err, asio::error::get_system_category()) : error_code{};
  }

  std::string client_host() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (client_.ss_family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&client_)->sin_addr, buf, sizeof buf);
    else if (client_.ss_family == AF_INET6)
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&client_)->sin6_addr, buf, sizeof buf);
    return buf;
  }

  // ---- relay -----------------------------------------------------------------------------------

  // One direction, until it ends. Buffered relaying is a chain of completion handlers, each
  // handing `self` (what keeps the session alive) on to the next operation: an awaitable
  // coroutine would allocate a frame per read and per write. Splicing (relay: splice from the
  // start, relay: auto once a direction has moved splice_after bytes and got a pipe) is a
  // coroutine: it only runs for bulk transfers.
  void start_pump(std::shared_ptr<session> self, int which, config::tcp_options::relay_mode mode) {
    using relay_mode = config::tcp_options::relay_mode;
    direction& d = dirs_[which];
    if (mode == relay_mode::splice && worker_->get_pipe(d.pipe, opts_.pipe_size)) {
      asio::co_spawn(worker_->io_, splice_direction(std::move(self), which), asio::detached);
      return;
    }
    d.buf = worker_->get_buffer(opts_.buffer_size);
    d.may_splice = mode == relay_mode::automatic;
    read_next(std::move(self), which);
  }

  void read_next(std::shared_ptr<session> self, int which) {
    direction& d = dirs_[which];
    net::async_read_batched(
        *d.src, asio::buffer(d.buf.get(), opts_.buffer_size),
        [self = std::move(self), which](error_code ec, std::size_t n) mutable {
          session& s = *self;
          s.on_read(std::move(self), which, ec, n);
        },
        &d.left);
  }

  void on_read(std::shared_ptr<session> self, int which, error_code ec, std::size_t n) {
    direction& d = dirs_[which];
    if (aborted_) return end_direction(which);
    if (ec == asio::error::eof) {
      pass_fin(d);
      return end_direction(which);
    }
    if (ec) {
      read_failed(d, ec.value());
      return end_direction(which);
    }
    last_activity_ = core::coarse_now();
    std::size_t sent = 0;
    if (d.left == net::queued::more && n < opts_.buffer_size) {
      // A short read with more queued behind it: most often the source's FIN right after its
      // last bytes (a request/response protocol's answer). The bytes go to the kernel with
      // MSG_MORE and the next read follows at once (it cannot wait: something is queued). A
      // FIN then leaves with the bytes in one segment (the shutdown or close flushes them),
      // which spares the peer a segment and an ACK; more data is written without the flag,
      // which sends everything.
      const ssize_t w = ::send(d.dst->native_handle(), d.buf.get(), n,
                               MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w == static_cast<ssize_t>(n)) return on_written(std::move(self), which, {}, n);
      if (w > 0) {
        sent = static_cast<std::size_t>(w);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        write_failed(d);
        return end_direction(which);
      }
    }
    // Batched with the loop turn's other sends: one io_uring_enter(2) for all of them.
    net::async_write_batched(
        *d.dst, asio::buffer(d.buf.get() + sent, n - sent),
        [self = std::move(self), which, sent](error_code wec, std::size_t m) mutable {
          session& s = *self;
          s.on_written(std::move(self), which, wec, m + sent);
        });
  }

  void on_written(std::shared_ptr<session> self, int which, error_code ec, std::size_t m) {
    direction& d = dirs_[which];
    if (aborted_) return end_direction(which);
    if (ec) {
      write_failed(d);
      return end_direction(which);
    }
    count(d, m);
    d.moved += m;
    if (d.may_splice && d.moved >= splice_after) {
      d.may_splice = false;  // one attempt; without a pipe, stay buffered
      if (make_non_blocking() && worker_->get_pipe(d.pipe, opts_.pipe_size)) {
        worker_->put_buffer(std::move(d.buf), opts_.buffer_size);  // empty: all written
        asio::co_spawn(worker_->io_, splice_direction(std::move(self), which), asio::detached);
        return;
      }
    }
    read_next(std::move(self), which);
  }

  static asio::awaitable<void> splice_direction(std::shared_ptr<session> self, int which) {
    co_await self->pump_splice(self->dirs_[which]);
    self->end_direction(which);
  }

  // The direction is over (passed its FIN, failed, or the session was aborted). The caller's
  // `self` may be the session's last owner: nothing touches the session after this returns.
  void end_direction(int which) {
    worker_->put_buffer(std::move(dirs_[which].buf), opts_.buffer_size);
    if (--pumps_ == 0) finish();
  }

  asio::awaitable<void> pump_splice(direction& d) {
    constexpr unsigned flags = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
    const std::size_t cap = d.pipe.size;
    bool eof = false;
    for (;;) {
      if (aborted_) co_return;
      if (!eof && d.in_pipe < cap) {
        const ssize_t n = ::splice(d.src->native_handle(), nullptr, d.pipe.w, nullptr,
                                   cap - d.in_pipe, flags);
        if (n > 0) {
          d.in_pipe += static_cast<std::size_t>(n);
        } else if (n == 0) {
          eof = true;
        } else if (errno == EINTR) {
          continue;
        } else if (errno == EAGAIN) {
          // Nothing to read; with data already in the pipe go and write it first.
          if (d.in_pipe == 0) {
            auto [ec] = co_await d.src->async_wait(tcp::socket::wait_read, use_tuple);
            if (aborted_) co_return;
            if (ec) {
              read_failed(d, ec.value());
              co_return;
            }
            continue;
          }
        } else {
          read_failed(d, errno);
          co_return;
        }
      }
      if (d.in_pipe > 0) {
        const ssize_t n = ::splice(d.pipe.r, nullptr, d.dst->native_handle(), nullptr, d.in_pipe, flags);
        if (n > 0) {
          d.in_pipe -= static_cast<std::size_t>(n);
          count(d, static_cast<std::size_t>(n));
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
          auto [ec] = co_await d.dst->async_wait(tcp::socket::wait_write, use_tuple);
          if (aborted_) co_return;
          if (ec) {
            write_failed(d);
            co_return;
          }
          continue;
        }
        write_failed(d);
        co_return;
      }
      if (eof) {
        pass_fin(d);
        co_return;
      }
    }
  }

  // Once per splice/write call: a single-writer store into this worker's shard, and the
  // backend's shared counter.
  void count(direction& d, std::size_t n) noexcept {
    if (shard_) {
      if (d.upstream_src)
        shard_->on_sent(index_, n);
      else
        shard_->on_received(index_, n);
    }
    if (d.backend_bytes) d.backend_bytes->fetch_add(n, std::memory_order_relaxed);
    last_activity_ = core::coarse_now();
  }

  // The source sent FIN and everything before it is delivered: pass the FIN on and keep the
  // other direction flowing.
  void pass_fin(direction& d) {
    error_code ec;
    d.fin_passed = true;
    if (dirs_[0].fin_passed && dirs_[1].fin_passed) {
      // Both sides have sent their FIN and everything is delivered: close() sends ours, so
      // skip the shutdown(2). Nothing is left unread, so neither close turns into a reset.
      down_.close(ec);
      up_.close(ec);
      return;
    }
    d.dst->shutdown(tcp::socket::shutdown_send, ec);
  }

  // Reading the source failed (normally a reset): reset the other side too.
  void read_failed(direction& d, int err) {
    if (d.upstream_src) lease_.report(pool::outcome::reset);
    reset(*d.dst);
  }

  // Writing to the destination failed (it reset or went away): reset the source.
  void write_failed(direction& d) {
    if (!d.upstream_src) lease_.report(pool::outcome::reset);
    reset(*d.src);
  }

  // Closes both sockets; `victim` with SO_LINGER 0 so its peer gets a RST.
  void reset(tcp::socket& victim) {
    if (aborted_) return;
    stats_.on_close(metrics::tcp_close_reason::reset);
    error_code ec;
    victim.set_option(asio::socket_base::linger(true, 0), ec);
    close_all();
  }

  void close_all() {
    if (aborted_) return;
    aborted_ = true;
    error_code ec;
    down_.close(ec);
    up_.close(ec);
    disarm();
  }

  void finish() {
    phase_ = phase::done;
    disarm();
  }

  // ---- the one timer: preamble / connect deadline, then the relay watchdog -------------------

  void arm(config::duration d) { arm_at(steady::now() + d); }

  void arm_at(steady::time_point when) {
    timer_.expires_at(when);
    const std::uint64_t gen = ++timer_gen_;
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->timer_gen_) return;
      self->on_timer();
    });
  }

  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  void arm_watchdog() {
    steady::time_point when = last_activity_ + opts_.idle_timeout;
    if (opts_.max_lifetime.count() > 0) when = std::min(when, started_ + opts_.max_lifetime);
    arm_at(when);
  }

  void on_timer() {
    error_code ec;
    switch (phase_) {
      case phase::preamble:
        timed_out_ = true;
        net::cancel_io(down_, ec);
        return;
      case phase::connect:
        timed_out_ = true;
        net::cancel_io(up_, ec);
        return;
      case phase::relay: {
        const auto now = steady::now();
        if (opts_.max_lifetime.count() > 0 && now >= started_ + opts_.max_lifetime) {
          stats_.on_close(metrics::tcp_close_reason::lifetime_expired);
          close_all();
          return;
        }
        if (now >= last_activity_ + opts_.idle_timeout) {
          // Not reported to passive health: a quiet client is no sign of a bad backend.
          stats_.on_close(metrics::tcp_close_reason::idle_timeout);
          close_all();
          return;
        }
        arm_watchdog();
        return;
      }
      case phase::queue:
      case phase::done:
        return;
    }
  }

  std::shared_ptr<const listener_state> listener_;
  std::shared_ptr<worker_state> worker_;
  const config::tcp_options& opts_;
  listener_stats& stats_;
  metrics::worker_shard* shard_;  // the worker's, or null
  std::size_t index_;             // listener's config position (metrics)
  tcp::socket down_;
  tcp::socket up_;
  asio::steady_timer timer_;
  std::uint64_t timer_gen_ = 0;
  bool timed_out_ = false;
  bool aborted_ = false;
  bool holding_slot_ = false;
  phase phase_ = phase::queue;
  int pumps_ = 0;
  steady::time_point started_;
  steady::time_point last_activity_;  // coarse clock (once per relay step): idle timeout only
  sockaddr_storage client_{};
  bool peer_known_ = false;  // client_ holds the peer's (or the PROXY header's) address
  sockaddr_storage local_{};
  std::unique_ptr<std::uint8_t[]> pre_;  // bytes read before connecting, replayed upstream
  std::size_t pre_len_ = 0;
  std::size_t pre_off_ = 0;  // start of the replay (after an accepted PROXY header)
  std::shared_ptr<const pool::snapshot> snap_;  // keeps the leased backend alive
  pool::lease lease_;
  std::array<direction, 2> dirs_{};
};

}  // namespace

std::shared_ptr<listener_state> make_listener_state(
    const config::listener& cfg, const std::vector<std::shared_ptr<pool::cluster>>& clusters,
    std::size_t listener_index, const std::shared_ptr<metrics::registry>& metrics) {
  auto index = [&](const std::string& name) {
    for (std::size_t i = 0; i < clusters.size(); ++i)
      if (clusters[i]->name() == name) return static_cast<int>(i);
    return -1;
  };
  auto st = std::make_shared<listener_state>();
  st->cfg = &cfg;
  st->index = listener_index;
  if (metrics)
    if (auto shared = metrics->tcp_listener(listener_index)) st->stats = std::move(shared);
  st->clusters = clusters;
  st->cluster = cfg.cluster.empty() ? -1 : index(cfg.cluster);
  if (!cfg.tcp.sni_routes.empty()) {
    std::vector<sni_router::entry> entries;
    for (const auto& r : cfg.tcp.sni_routes) entries.push_back({r.server_name, index(r.cluster)});
    st->sni = std::make_shared<const sni_router>(entries, st->cluster);
  }
  return st;
}

std::shared_ptr<worker_state> make_worker_state(asio::io_context& io,
                                                std::shared_ptr<metrics::registry> metrics,
                                                unsigned worker_index) {
  return std::make_shared<worker_state>(io, std::move(metrics), worker_index);
}

void start_session(tcp::socket socket, std::shared_ptr<const listener_state> listener,
                   const std::shared_ptr<worker_state>& worker) {
  if (worker->draining_) return;  // accepted just before the acceptor closed
  auto s = std::make_shared<session>(std::move(socket), std::move(listener), worker);
  asio::co_spawn(worker->io_, session::run(std::move(s)), asio::detached);
}

void drain(worker_state& worker) { worker.draining_ = true; }

std::size_t active_sessions(const worker_state& worker) noexcept {
  return worker.active_.load(std::memory_order_relaxed);
}

}  // namespace sluice::l4
