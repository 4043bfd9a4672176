#include "net/runtime.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>
#include <thread>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "net/socket_adopt.hpp"
#include "sluice/log/log.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {

// accept4(2) errors that concern only the connection being taken (it went away before we took
// it, or a network error on it): accept(2) says to treat them like EAGAIN and retry.
bool retry_accept(int err) noexcept {
  switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(SLUICE_NO_ACCEPT_OP)
#define SLUICE_ACCEPT_OP 1
// accept4(2) as an operation of Asio's reactor on the listening socket. Asio's own async_wait
// re-arms the socket with an epoll_ctl(2) every time it is started (so that an edge consumed
// earlier is not lost); an operation that performs the accept itself needs no such re-arming:
// when it is started while the reactor's "try at once" flag is set it calls accept4 right away,
// and otherwise (or on EAGAIN) it waits for the socket's next edge, which epoll reports since
// the accept that emptied the backlog. It accepts a batch: until EAGAIN (then the flag is
// cleared, so the next operation waits for an edge without trying first) or `max` accepted.
// Completes with (error, accepted batch); an error only when nothing was accepted.
struct accepted_batch {
  static constexpr int max = 64;  // accepts before letting the worker's other work run
  int fd[max];
  int n = 0;
};

template <typename Handler, typename IoExecutor>
class accept4_op : public asio::detail::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(accept4_op);

  accept4_op(int fd, Handler& handler, const IoExecutor& io_ex)
      : reactor_op(boost::system::error_code(), &accept4_op::do_perform,
                   &accept4_op::do_complete),
        fd_(fd),
        handler_(static_cast<Handler&&>(handler)),
        work_(handler_, io_ex) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<accept4_op*>(base);
    auto& b = o->batch_;
    while (b.n < accepted_batch::max) {
      const int fd = ::accept4(o->fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        b.fd[b.n++] = fd;
        continue;
      }
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return b.n > 0 ? done_and_exhausted : not_done;
      if (retry_accept(err)) continue;
      // Reported when nothing was accepted; otherwise it shows again on the next try.
      if (b.n == 0) o->ec_ = boost::system::error_code(err, asio::error::get_system_category());
      return done;
    }
    return done;
  }

  static void do_complete(void* owner, asio::detail::operation* base,
                          const boost::system::error_code&, std::size_t) {
    auto* o = static_cast<accept4_op*>(base);
    ptr p = {asio::detail::addressof(o->handler_), o, o};
    asio::detail::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    asio::detail::binder2<Handler, boost::system::error_code, accepted_batch> handler(
        o->handler_, o->ec_, o->batch_);
    p.h = asio::detail::addressof(handler.handler_);
    p.reset();
    if (owner) {
      asio::detail::fenced_block b(asio::detail::fenced_block::half);
      w.complete(handler, handler.handler_);
    } else {
      // The reactor is being destroyed: the connections go too.
      for (int i = 0; i < handler.arg2_.n; ++i) ::close(handler.arg2_.fd[i]);
    }
  }

 private:
  int fd_;
  accepted_batch batch_;
  Handler handler_;
  asio::detail::handler_work<Handler, IoExecutor> work_;
};

// Starts an accept4_op on `listener` (a listening socket wrapped as a tcp::socket, registered
// with the reactor of its io_context, non-blocking).
template <typename Handler>
void async_accept4(tcp::socket& listener, asio::detail::reactor& reactor, Handler&& handler) {
  using handler_type = std::decay_t<Handler>;
  using op = accept4_op<handler_type, tcp::socket::executor_type>;
  auto& impl = (listener.*detail::socket_state_access::member()).get_implementation();
  if (impl.socket_ < 0 || impl.reactor_data_ == nullptr) {
    asio::post(listener.get_executor(),
               [h = handler_type(std::forward<Handler>(handler))]() mutable {
                 h(asio::error::bad_descriptor, accepted_batch{});
               });
    return;
  }
  handler_type h(std::forward<Handler>(handler));
  typename op::ptr p = {asio::detail::addressof(h), op::ptr::allocate(h), nullptr};
  p.p = new (p.v) op(impl.socket_, h, listener.get_executor());
  reactor.start_op(asio::detail::reactor::read_op, impl.socket_, impl.reactor_data_, p.p,
                   false, true);
  p.v = p.p = nullptr;
}
#endif

// One acceptor on one worker. Waits for readability, then accepts with accept4(SOCK_NONBLOCK |
// SOCK_CLOEXEC) until the backlog is empty or a batch is done: no ioctl per connection, and
// accepted sockets are not inherited by an exec (binary upgrade). On resource exhaustion
// (EMFILE, ENFILE, ENOBUFS, ENOMEM) it pauses briefly instead of spinning, logging once per
// episode. Used on its worker's thread only, except name() and fd() (any thread).
// What the acceptors of one listener share: the spec, every worker's context, and the
// connections handed to each worker but not yet started there.
class listener_share : public std::enable_shared_from_this<listener_share> {
 public:
  listener_share(const listen_spec& spec, const std::vector<std::unique_ptr<asio::io_context>>& ios)
      : spec_(spec), incoming_(std::make_unique<std::atomic<std::size_t>[]>(ios.size())) {
    for (const auto& io : ios) ios_.push_back(io.get());
  }

  /// The worker that should serve a connection `w` accepted: `w`, unless another serves at
  /// least runtime::handoff_margin fewer (the least loaded such one).
  unsigned pick(unsigned w) const {
    if (!spec_.load || ios_.size() < 2) return w;
    auto load_of = [&](unsigned i) {
      return spec_.load(i) + incoming_[i].load(std::memory_order_relaxed);
    };
    const std::size_t mine = load_of(w);
    unsigned best = w;
    std::size_t best_load = mine;
    for (unsigned i = 0; i < ios_.size(); ++i) {
      if (i == w) continue;
      const std::size_t l = load_of(i);
      if (l < best_load) best = i, best_load = l;
    }
    return mine >= best_load + runtime::handoff_margin ? best : w;
  }

  /// Starts the accepted `fd` on worker `target`'s thread.
  void hand_over(unsigned target, tcp protocol, int fd) {
    incoming_[target].fetch_add(1, std::memory_order_relaxed);
    asio::post(*ios_[target], [self = shared_from_this(), target, protocol,
                               owned = owned_fd(fd)]() mutable {
      self->incoming_[target].fetch_sub(1, std::memory_order_relaxed);
      self->start(target, protocol, owned.release());
    });
  }

  /// On worker `w`'s thread: wraps `fd` in a socket of that worker and hands it on.
  void start(unsigned w, tcp protocol, int fd) const {
    tcp::socket socket(*ios_[w]);
    boost::system::error_code ec;
    adopt_nonblocking(socket, protocol, fd, ec);
    if (ec) {
      ::close(fd);
      SLUICE_LOG(warn, "accept on listener " << spec_.name << ": " << ec.message());
      return;
    }
    spec_.on_accept(w, std::move(socket));
  }

  const listen_spec& spec() const noexcept { return spec_; }

 private:
  // Closes the descriptor if the handler is destroyed unrun (its context shut down first).
  struct owned_fd {
    int fd;
    explicit owned_fd(int f) noexcept : fd(f) {}
    owned_fd(owned_fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    owned_fd& operator=(owned_fd&&) = delete;
    ~owned_fd() {
      if (fd >= 0) ::close(fd);
    }
    int release() noexcept { return std::exchange(fd, -1); }
  };

  listen_spec spec_;
  std::vector<asio::io_context*> ios_;
  std::unique_ptr<std::atomic<std::size_t>[]> incoming_;
};

class acceptor_loop : public std::enable_shared_from_this<acceptor_loop> {
 public:
  acceptor_loop(asio::io_context& io, unsigned worker, tcp::acceptor acceptor,
                std::shared_ptr<listener_share> share)
      : worker_(worker),
        acceptor_(std::move(acceptor)),
        protocol_(protocol_of(acceptor_)),
        fd_(acceptor_.native_handle()),
#ifdef SLUICE_ACCEPT_OP
        listen_(io),
        reactor_(asio::use_service<asio::detail::reactor>(io)),
#endif
        backoff_(io),
        share_(std::move(share)),
        spec_(share_->spec()) {
    // accept4 must never block the worker; Asio would only set this at the first async_wait.
    boost::system::error_code ignored;
    acceptor_.non_blocking(true, ignored);
#ifdef SLUICE_ACCEPT_OP
    // The listening socket moves into a tcp::socket, whose reactor registration the accept
    // operation needs (the acceptor keeps its own private). Once per listener and worker.
    boost::system::error_code ec;
    const int fd = acceptor_.release(ec);
    if (!ec) listen_.assign(protocol_, fd, ec);
    if (!ec) listen_.non_blocking(true, ec);
    if (ec) SLUICE_LOG(warn, "listener " << spec_.name << ": " << ec.message());
#endif
  }

  void start() { accept_next(); }
  const std::string& name() const noexcept { return spec_.name; }
  /// The listening socket while open, else -1.
  int fd() const noexcept { return open_.load(std::memory_order_acquire) ? fd_ : -1; }
  /// Closes the listening socket in this process only: never shutdown(), which would break it
  /// for another process holding the same socket (binary upgrade).
  void close() {
    closed_ = true;
    open_.store(false, std::memory_order_release);
    // release() takes the socket out of epoll explicitly: after close() alone it would stay
    // registered while another process (an upgrade's successor) holds the same socket, and
    // this worker would keep waking up for connections that are not its own.
    boost::system::error_code ec;
#ifdef SLUICE_ACCEPT_OP
    const int fd = listen_.release(ec);  // a pending accept completes with operation_aborted
#else
    const int fd = acceptor_.release(ec);
#endif
    if (!ec && fd >= 0) ::close(fd);
    backoff_.cancel();
  }

 private:
#ifndef SLUICE_ACCEPT_OP
  static constexpr int batch = 64;  // accepts before letting the worker's other work run
#endif

  static tcp protocol_of(const tcp::acceptor& a) {
    boost::system::error_code ec;
    const auto ep = a.local_endpoint(ec);
    return !ec && ep.protocol() == tcp::v6() ? tcp::v6() : tcp::v4();
  }

#ifdef SLUICE_ACCEPT_OP
  // A batch per completion. After a full batch the next accept starts at once (and completes
  // at once, through the scheduler), so the worker's other handlers run in between.
  void accept_next() {
    if (closed_) return;
    async_accept4(listen_, reactor_, [self = shared_from_this()](boost::system::error_code ec,
                                                                 const accepted_batch& b) {
      int i = 0;
      if (!self->closed_ && ec != asio::error::operation_aborted) {
        if (ec) return self->pause(ec.value(), "accept");
        for (; i < b.n && !self->closed_; ++i) self->take(b.fd[i]);
      }
      for (; i < b.n; ++i) ::close(b.fd[i]);  // closed meanwhile
      if (!self->closed_ && ec != asio::error::operation_aborted) self->accept_next();
    });
  }
#else
  void accept_next() { accept_batch(); }
#endif

  void take(int fd) {
    exhausted_ = false;
    const unsigned target = share_->pick(worker_);
    if (target != worker_) return share_->hand_over(target, protocol_, fd);
    share_->start(worker_, protocol_, fd);
  }

#ifndef SLUICE_ACCEPT_OP
  // Without the accept operation: wait for readability, then accept until EAGAIN or a batch.
  void wait() {
    acceptor_.async_wait(tcp::acceptor::wait_read,
                         [self = shared_from_this()](boost::system::error_code ec) {
                           if (self->closed_ || ec == asio::error::operation_aborted) return;
                           if (ec) return self->pause(ec.value(), "wait");
                           self->accept_batch();
                         });
  }

  void accept_batch() {
    if (closed_) return;
    for (int i = 0; i < batch; ++i) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return wait();
        if (retry_accept(err)) continue;
        return pause(err, "accept");
      }
      take(fd);
      if (closed_) return;
    }
    // More may be queued, and edge-triggered epoll will not say so again: continue after the
    // worker's other ready handlers.
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] { self->accept_batch(); });
  }
#endif

  void pause(int err, const char* what) {
    const bool exhaustion = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    if (!exhaustion || !exhausted_) {
      SLUICE_LOG(warn, what << " on listener " << spec_.name << ": " << std::strerror(err)
                            << (exhaustion ? "; pausing accepts (logged once until one succeeds)"
                                           : "; retrying shortly"));
    }
    exhausted_ = exhaustion;
    backoff_.expires_after(std::chrono::milliseconds(exhaustion ? 100 : 50));
    backoff_.async_wait([self = shared_from_this()](boost::system::error_code wec) {
      if (!wec && !self->closed_) self->accept_next();
    });
  }

  unsigned worker_;
  tcp::acceptor acceptor_;
  tcp protocol_;
  int fd_;
#ifdef SLUICE_ACCEPT_OP
  tcp::socket listen_;  // the listening socket, for the reactor (acceptor_ is left empty)
  asio::detail::reactor& reactor_;
#endif
  asio::steady_timer backoff_;
  std::shared_ptr<listener_share> share_;
  const listen_spec& spec_;  // share_'s
  bool closed_ = false;
  bool exhausted_ = false;
  std::atomic<bool> open_{true};
};

tcp::endpoint to_endpoint(const core::address& a, std::uint16_t port_override) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  if (port_override != 0) ep.port(port_override);
  return ep;
}

}  // namespace

struct runtime::impl {
  std::unique_ptr<asio::signal_set> stop_signals, other_signals;
  std::mutex mutex;  // guards acceptors: listen/unlisten (control) vs. drain (workers)
  std::vector<std::vector<std::shared_ptr<acceptor_loop>>> acceptors;  // [worker][listener]
  std::atomic<bool> draining{false};
};

runtime::runtime(unsigned workers) : impl_(std::make_unique<impl>()) {
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  // One thread runs each worker context, and every socket of a worker is used only on that
  // thread (other threads post to it), so the reactor's per-socket lock is dropped: it cost a
  // mutex lock/unlock pair per I/O operation. The scheduler and registration stay locked, so
  // `post` from any thread and creating sockets before the workers start remain safe.
  for (unsigned i = 0; i < workers; ++i)
    ios_.push_back(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
  impl_->acceptors.resize(workers);
  // Signals are caught from here on: one that arrives before run() (say, SIGTERM right after
  // READY=1) waits in the set instead of killing the process with its default action.
  impl_->stop_signals =
      std::make_unique<asio::signal_set>(control_, SIGTERM, SIGINT, SIGQUIT);
  impl_->other_signals = std::make_unique<asio::signal_set>(control_, SIGHUP, SIGUSR1);
}

runtime::~runtime() {
  // Destroying the signal sets gives TERM, INT, QUIT, HUP and USR1 back their default action,
  // which terminates the process. Whatever part of the exit is left (the rest of the teardown,
  // and under a sanitizer its leak check) is not worth dying for: a second SIGTERM from a
  // supervisor that arrives now is ignored, and the process exits with its own status.
  // Blocked on this thread meanwhile, so the moment between the two cannot kill it either.
  sigset_t set, old;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  impl_->stop_signals.reset();
  impl_->other_signals.reset();
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1}) ::signal(sig, SIG_IGN);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);  // what arrived meanwhile is now ignored
}

namespace {
// Options set on a listening socket, which Linux copies to every socket it accepts (one
// setsockopt(2) per listener instead of one per connection). Best effort: errors ignored.
// - TCP_NODELAY: HTTP and L4 connections alike send what they have at once.
// - TCP_INQ (Linux 4.18+): a recvmsg(2) given room for control messages learns how many bytes
//   (and whether a FIN) remain queued, which lets the L4 relay skip a read bound to return
//   EAGAIN and send a last answer with its FIN (src/l4/relay_read.hpp). Reads without a
//   control buffer (everything else) are unaffected.
void set_inherited_options(tcp::acceptor& acc) {
  int one = 1;
  ::setsockopt(acc.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef TCP_INQ
  ::setsockopt(acc.native_handle(), IPPROTO_TCP, TCP_INQ, &one, sizeof one);
#endif
}
}  // namespace

std::uint16_t runtime::listen(const listen_spec& spec) {
  // Every socket is ready before any starts accepting, so a failure leaves nothing behind.
  std::vector<std::pair<unsigned, tcp::acceptor>> made;
  std::uint16_t port = spec.address.port();
  // Inherited sockets (binary upgrade) first, spread over the workers: with fewer workers than
  // sockets some workers accept on several, with more the others bind below.
  const auto& inherited = spec.inherited_fds;
  for (std::size_t i = 0; i < inherited.size(); ++i) {
    const unsigned w = static_cast<unsigned>(i % workers());
    tcp::acceptor acc(*ios_[w]);
    boost::system::error_code ec;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(inherited[i], reinterpret_cast<sockaddr*>(&ss), &len) != 0)
      ec.assign(errno, boost::system::system_category());
    else if (ss.ss_family != spec.address.storage.ss_family)
      ec = asio::error::address_family_not_supported;
    else
      acc.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), inherited[i], ec);
    if (ec) {
      // The failed one and the rest are still ours to close; earlier ones belong to `made`.
      for (std::size_t j = i; j < inherited.size(); ++j) ::close(inherited[j]);
      throw std::system_error(ec.value(), std::generic_category(),
                              "listener " + spec.name + ": cannot use the inherited socket for " +
                                  spec.address.text);
    }
    port = acc.local_endpoint().port();
    set_inherited_options(acc);
    made.emplace_back(w, std::move(acc));
  }
  for (unsigned w = static_cast<unsigned>(made.size()); w < workers(); ++w) {
    auto ep = to_endpoint(spec.address, port);
    tcp::acceptor acc(*ios_[w]);
    boost::system::error_code ec;
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc.set_option(reuse_port(true), ec);
    if (!ec && ep.protocol() == tcp::v6()) acc.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) set_inherited_options(acc);
    if (ec) {
      throw std::system_error(ec.value(), std::generic_category(),
                              "listener " + spec.name + ": cannot listen on " + spec.address.text);
    }
    // Port 0: the first worker's bind chooses; the others join that port.
    if (port == 0) port = acc.local_endpoint().port();
    made.emplace_back(w, std::move(acc));
  }
  auto share = std::make_shared<listener_share>(spec, ios_);
  for (auto& [w, acc] : made) {
    auto loop = std::make_shared<acceptor_loop>(*ios_[w], w, std::move(acc), share);
    {
      std::lock_guard lock(impl_->mutex);
      impl_->acceptors[w].push_back(loop);
    }
    asio::post(*ios_[w], [loop] { loop->start(); });
  }
  return port;
}

std::vector<listener_fds> runtime::listening_fds() const {
  std::vector<listener_fds> out;
  std::lock_guard lock(impl_->mutex);
  if (impl_->draining.load()) return out;
  for (const auto& per_worker : impl_->acceptors) {
    for (const auto& a : per_worker) {
      const int fd = a->fd();
      if (fd < 0) continue;
      auto it = std::find_if(out.begin(), out.end(),
                             [&](const listener_fds& l) { return l.name == a->name(); });
      if (it == out.end()) it = out.insert(out.end(), listener_fds{a->name(), {}});
      it->fds.push_back(fd);
    }
  }
  return out;
}

bool runtime::draining() const noexcept { return impl_->draining.load(); }

void runtime::unlisten(const std::string& name) {
  for (unsigned w = 0; w < workers(); ++w) {
    std::vector<std::shared_ptr<acceptor_loop>> gone;
    {
      std::lock_guard lock(impl_->mutex);
      auto& v = impl_->acceptors[w];
      for (auto it = v.begin(); it != v.end();) {
        if ((*it)->name() == name) {
          gone.push_back(std::move(*it));
          it = v.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (!gone.empty())
      asio::post(*ios_[w], [gone = std::move(gone)] {
        for (auto& a : gone) a->close();
      });
  }
}

void runtime::stop() {
  asio::post(control_, [this] {
    if (impl_->draining.exchange(true)) return;
    SLUICE_LOG(info, "draining: stopped accepting, waiting for in-flight requests");
    for (unsigned w = 0; w < workers(); ++w) {
      asio::post(*ios_[w], [this, w] {
        std::vector<std::shared_ptr<acceptor_loop>> list;
        {
          std::lock_guard lock(impl_->mutex);
          list = impl_->acceptors[w];
        }
        for (auto& a : list) a->close();
      });
    }
    if (on_drain_) on_drain_();
  });
}

int runtime::run(std::chrono::milliseconds drain_timeout) {
  auto control_guard = asio::make_work_guard(control_);
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& io : ios_) guards.push_back(asio::make_work_guard(*io));

  auto& stop_signals = *impl_->stop_signals;
  auto& other_signals = *impl_->other_signals;
  std::function<void(boost::system::error_code, int)> on_other =
      [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP && on_sighup_) on_sighup_();
        if (sig == SIGUSR1 && on_sigusr1_) on_sigusr1_();
        other_signals.async_wait(on_other);
      };
  other_signals.async_wait(on_other);

  asio::steady_timer poll(control_);
  std::chrono::steady_clock::time_point deadline{};
  std::function<void()> wait_drained = [&] {
    std::size_t active = active_ ? active_() : 0;
    if (active == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (active != 0)
        SLUICE_LOG(warn, "drain timeout: closing " << active << " connection(s) still open");
      else
        SLUICE_LOG(info, "drained, exiting");
      for (auto& g : guards) g.reset();
      for (auto& io : ios_) io->stop();
      control_guard.reset();
      other_signals.cancel();
      // Control-plane listeners and timers (admin accept, probes, watches) may still hold
      // work; once drained nothing on the control thread matters any more.
      control_.stop();
      return;
    }
    poll.expires_after(std::chrono::milliseconds(20));
    poll.async_wait([&](boost::system::error_code ec) {
      if (!ec) wait_drained();
    });
  };
  stop_signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    SLUICE_LOG(info, "received signal " << sig << ", draining");
    stop();
  });
  // Whoever called stop() (a signal, the admin API, a test), the drain is watched from here.
  std::function<void()> watch_stop = [&] {
    if (impl_->draining.load() && deadline == std::chrono::steady_clock::time_point{}) {
      stop_signals.cancel();
      deadline = std::chrono::steady_clock::now() + drain_timeout;
      wait_drained();
      return;
    }
    if (deadline != std::chrono::steady_clock::time_point{}) return;
    poll.expires_after(std::chrono::milliseconds(100));
    poll.async_wait([&](boost::system::error_code ec) {
      if (!ec) watch_stop();
    });
  };
  watch_stop();

  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers(); ++w) {
    threads.emplace_back([this, w] {
      for (;;) {
        try {
          ios_[w]->run();
          return;
        } catch (const std::exception& e) {
          // A bug in one session must not take the worker down with it.
          SLUICE_LOG(error, "worker " << w << ": unhandled exception: " << e.what());
        }
      }
    });
  }
  for (;;) {
    try {
      control_.run();
      break;
    } catch (const std::exception& e) {
      SLUICE_LOG(error, "control: unhandled exception: " << e.what());
    }
  }
  for (auto& t : threads) t.join();
  return 0;
}

}  // namespace sluice::net
