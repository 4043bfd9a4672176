#include "net/acceptor.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/socket_adopt.hpp"
#include "sluice/log/log.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

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

// What the acceptors of one listener share: the spec, every worker's context, and the
// connections handed to each worker but not yet started there.
}  // namespace

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

namespace {

// One acceptor on one worker. Waits for readability, then accepts with accept4(SOCK_NONBLOCK |
// SOCK_CLOEXEC) until the backlog is empty or a batch is done: no ioctl per connection, and
// accepted sockets are not inherited by an exec (binary upgrade). On resource exhaustion
// (EMFILE, ENFILE, ENOBUFS, ENOMEM) it pauses briefly instead of spinning, logging once per
// episode. Used on its worker's thread only, except name() and fd() (any thread).
class acceptor_loop final : public acceptor, public std::enable_shared_from_this<acceptor_loop> {
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

  void start() override { accept_next(); }
  const std::string& name() const noexcept override { return spec_.name; }
  /// The listening socket while open, else -1.
  int fd() const noexcept override { return open_.load(std::memory_order_acquire) ? fd_ : -1; }
  /// Closes the listening socket in this process only: never shutdown(), which would break it
  /// for another process holding the same socket (binary upgrade).
  void close() override {
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

}  // namespace

std::shared_ptr<listener_share> make_listener_share(
    const listen_spec& spec, const std::vector<std::unique_ptr<asio::io_context>>& ios) {
  return std::make_shared<listener_share>(spec, ios);
}

std::shared_ptr<acceptor> make_acceptor(asio::io_context& io, unsigned worker, tcp::acceptor acc,
                                        std::shared_ptr<listener_share> share) {
  return std::make_shared<acceptor_loop>(io, worker, std::move(acc), std::move(share));
}

}  // namespace sluice::net
