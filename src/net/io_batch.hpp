// Socket sends and receives gathered per loop turn and issued with one io_uring_enter(2).
// Internal header: includes Asio.
//
// A proxied request costs four socket calls (the request read, the upstream write, the answer
// read, the client write). Where a system call is dear (a paravirtualised guest pays about 1 us
// per call), the calls cost more than the copies. Here each is queued instead, and one flush
// handler, posted behind the loop turn's other handlers, hands every queued operation to the
// kernel in one io_uring_enter(2) (a few rounds while completions queue more).
// - A send is queued at once. One that did not go out whole continues as an ordinary
//   asio::async_write of the rest, on Asio's reactor.
// - A receive first waits for readiness on Asio's epoll reactor (a reactor operation that reads
//   nothing: an event, or the reactor's "try at once" flag), then queues its recvmsg(2), with
//   TCP_INQ's control message. EAGAIN waits for the next event; "nothing left" clears the flag
//   as async_read_relay() does (net/relay_read.hpp).
//
// Everything carries MSG_DONTWAIT: io_uring then runs each operation inline, during the enter,
// and reports "would block" (EAGAIN) instead of waiting (checked once per ring, at start-up, on
// a full and an empty socket pair: a kernel that waits instead gets no ring). So nothing is in
// the kernel's hands once the enter returns, and no io_uring operation outlives its loop turn.
//
// An operation queued and not flushed yet is cancelled by cancel_io() (socket.cancel() alone
// does not see it), and completes with operation_aborted, as does one whose socket was closed
// in the meantime: what Asio reports for an operation pending at cancel() or close().
//
// The socket must outlive the operation, as the buffers must (closing it is fine). Only for
// sockets of an io_context run by one thread (the runtime's workers).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>

#include "net/relay_read.hpp"

namespace sluice::net {

namespace detail {

// One queued send or receive: the message for the kernel and what to do with its result.
class batched_io {
 public:
  static constexpr std::size_t max_iov = 8;

  batched_io* next = nullptr;
  bool is_recv = false;    // recvmsg(2), else sendmsg(2)
  int fd = -1;             // the socket's fd when queued
  bool cancelled = false;  // by cancel_io() before the flush
  std::size_t total = 0;   // bytes in iov
  iovec iov[max_iov];
  msghdr msg{};

  /// The socket's fd now: -1 when it was closed since the operation was queued.
  virtual int fd_now() const noexcept = 0;
  /// `res`: bytes sent, or -errno. Completes the handler or continues with Asio; frees this.
  virtual void complete(int res) = 0;
  /// The ring is going away with the operation not done: frees this without a completion.
  virtual void destroy() noexcept = 0;

 protected:
  ~batched_io() = default;
};

class io_batcher;

/// Whether receives are batched too (SLUICE_IO_URING_RECV=0 turns them off; for comparisons).
bool recv_batching() noexcept;

/// The batcher of `context` (a service, made on first use), or null when I/O is not batched
/// there: not an io_context, no io_uring (kernel, seccomp, `kernel.io_uring_disabled`), a
/// kernel whose io_uring waits on MSG_DONTWAIT sends, or SLUICE_IO_URING_SEND=0 in the
/// environment.
io_batcher* batcher_of(boost::asio::io_context& context);

/// The batcher for a socket with executor `ex`, or null (see batcher_of).
template <typename Executor>
io_batcher* batcher_for(const Executor& ex) {
  if constexpr (std::is_same_v<Executor, boost::asio::io_context::executor_type>) {
    return batcher_of(ex.context());
  } else if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
    auto* io_ex = ex.template target<boost::asio::io_context::executor_type>();
    return io_ex != nullptr ? batcher_of(io_ex->context()) : nullptr;
  } else {
    return nullptr;
  }
}

/// Queues `op` (fd, iov, msg, total set) for the next flush, which it posts if need be.
void enqueue(io_batcher& batcher, batched_io* op) noexcept;

/// Marks the operations queued for `fd` as cancelled: the flush completes them, not done, with
/// operation_aborted.
void cancel_queued(io_batcher& batcher, int fd) noexcept;

template <typename Socket, typename Handler>
class batched_send_op final : public batched_io {
 public:
  batched_send_op(Socket& socket, Handler&& handler)
      : socket_(socket), handler_(std::move(handler)) {}

  int fd_now() const noexcept override { return socket_.is_open() ? socket_.native_handle() : -1; }

  void complete(int res) override {
    if (res >= 0 && static_cast<std::size_t>(res) == total) return finish({}, total);
    if (res < 0 && res != -EAGAIN) {
      return finish(boost::system::error_code(-res, boost::asio::error::get_system_category()), 0);
    }
    // Partly sent, or no room: the rest goes through Asio's reactor.
    const std::size_t sent = res > 0 ? static_cast<std::size_t>(res) : 0;
    std::vector<boost::asio::const_buffer> rest;
    std::size_t skip = sent;
    for (std::size_t i = 0; i < msg.msg_iovlen; ++i) {
      if (skip >= iov[i].iov_len) {
        skip -= iov[i].iov_len;
        continue;
      }
      rest.emplace_back(static_cast<const char*>(iov[i].iov_base) + skip, iov[i].iov_len - skip);
      skip = 0;
    }
    boost::asio::async_write(
        socket_, rest,
        [this, sent](boost::system::error_code ec, std::size_t n) { finish(ec, sent + n); });
  }

  void destroy() noexcept override { delete this; }

 private:
  void finish(boost::system::error_code ec, std::size_t n) {
    Handler handler(std::move(handler_));
    delete this;
    std::move(handler)(ec, n);
  }

  Socket& socket_;
  Handler handler_;
};

struct initiate_batched_send {
  template <typename Handler, typename Socket, typename Buffers>
  void operator()(Handler&& handler, Socket* socket, const Buffers& buffers,
                  io_batcher* batcher) const {
    using op_type = batched_send_op<Socket, std::decay_t<Handler>>;
    auto* op = new op_type(*socket, std::forward<Handler>(handler));
    std::size_t n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers),
              end = boost::asio::buffer_sequence_end(buffers);
         it != end; ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() == 0) continue;
      op->iov[n].iov_base = const_cast<void*>(b.data());
      op->iov[n].iov_len = b.size();
      op->total += b.size();
      ++n;
    }
    op->msg.msg_iov = op->iov;
    op->msg.msg_iovlen = n;
    op->fd = socket->native_handle();
    enqueue(*batcher, op);
  }
};

// Whether `buffers` fits one batched send: at most max_iov non-empty buffers, some bytes.
template <typename Buffers>
bool fits_batch(const Buffers& buffers) {
  std::size_t n = 0, bytes = 0;
  for (auto it = boost::asio::buffer_sequence_begin(buffers),
            end = boost::asio::buffer_sequence_end(buffers);
       it != end; ++it) {
    boost::asio::const_buffer b(*it);
    if (b.size() == 0) continue;
    if (++n > batched_io::max_iov) return false;
    bytes += b.size();
  }
  return bytes > 0;
}

}  // namespace detail

/// socket.cancel(ec), and the same for the operations queued on `socket` for the loop turn's
/// flush.
template <typename Executor>
void cancel_io(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket,
               boost::system::error_code& ec) {
  if (socket.is_open()) {
    if (auto* batcher = detail::batcher_for(socket.get_executor()))
      detail::cancel_queued(*batcher, socket.native_handle());
  }
  socket.cancel(ec);
}

/// Whether sends on `socket` are batched (its io_context has a batcher).
template <typename Executor>
bool sends_batched(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket) {
  return detail::batcher_for(socket.get_executor()) != nullptr;
}

/// Like asio::async_write(socket, buffers, token) (same completion: error_code, bytes; all of
/// `buffers` sent unless an error), but the send is batched with the loop turn's others when
/// the socket's io_context has a batcher. `buffers` must stay valid until completion.
template <typename Executor, typename Buffers, typename CompletionToken>
auto async_write_batched(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket,
                         const Buffers& buffers, CompletionToken&& token) {
  detail::io_batcher* batcher = nullptr;
  if (socket.is_open() && detail::fits_batch(buffers))
    batcher = detail::batcher_for(socket.get_executor());
  if (batcher == nullptr)
    return boost::asio::async_write(socket, buffers, std::forward<CompletionToken>(token));
  return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, std::size_t)>(
      detail::initiate_batched_send{}, token, &socket, buffers, batcher);
}

#ifdef SLUICE_RELAY_READ

namespace detail {

// A receive in two steps: readiness from Asio's reactor (no system call: an epoll event, or the
// reactor's "try at once" flag), then a recvmsg(2) in the loop turn's flush. EAGAIN (nothing
// after all) waits for readiness again; TCP_INQ's "nothing left" clears the flag, as
// async_read_relay() does.
template <typename Handler>
class batched_recv_op final : public batched_io {
 public:
  batched_recv_op(boost::asio::ip::tcp::socket& socket, Handler&& handler,
                  boost::asio::mutable_buffer buf, queued* left, io_batcher& batcher)
      : socket_(socket), handler_(std::move(handler)), left_(left), batcher_(batcher) {
    is_recv = true;
    iov[0].iov_base = buf.data();
    iov[0].iov_len = buf.size();
    total = buf.size();
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    wait_.owner = this;
  }

  // Waits for readiness (or finds it at once, from the reactor's flag).
  void start(bool is_continuation) {
    auto& impl =
        (socket_.*io_object_access<boost::asio::ip::tcp::socket>::member()).get_implementation();
    fd = impl.socket_;
    if (impl.socket_ < 0 || impl.reactor_data_ == nullptr) {
      // Closed since the operation began (by another completion of the same flush, say): what
      // Asio reports for a read pending at close.
      return finish(boost::asio::error::operation_aborted, 0);
    }
    wait_.ec_ = boost::system::error_code();
    reactor_of_state(impl.reactor_data_)
        .start_op(relay_reactor::read_op, impl.socket_, impl.reactor_data_, &wait_, is_continuation,
                  true);
  }

  int fd_now() const noexcept override { return socket_.is_open() ? socket_.native_handle() : -1; }

  void complete(int res) override {
    if (res > 0) {
      const int inq = tcp_inq(msg);
      if (inq >= 0 && left_) *left_ = inq > 0 ? queued::more : queued::nothing;
      if (inq == 0) expect_nothing_to_read(socket_);
      return finish({}, static_cast<std::size_t>(res));
    }
    if (res == 0) {
      expect_nothing_to_read(socket_);
      return finish(boost::asio::error::eof, 0);
    }
    if (res == -EAGAIN) {  // readiness without bytes: wait for the next event
      expect_nothing_to_read(socket_);
      return start(false);
    }
    finish(boost::system::error_code(-res, boost::asio::error::get_system_category()), 0);
  }

  void destroy() noexcept override { delete this; }

 private:
  // The readiness step, a reactor operation of its own that reads nothing.
  struct wait_op : boost::asio::detail::reactor_op {
    batched_recv_op* owner = nullptr;
    wait_op()
        : reactor_op(boost::system::error_code(), &wait_op::do_perform, &wait_op::do_complete) {}
    static status do_perform(reactor_op*) { return done; }
    static void do_complete(void* sched, boost::asio::detail::operation* base,
                            const boost::system::error_code&, std::size_t) {
      auto* self = static_cast<wait_op*>(base)->owner;
      if (sched == nullptr) return self->destroy();  // the reactor is going away
      self->on_ready(static_cast<wait_op*>(base)->ec_);
    }
  };

  void on_ready(const boost::system::error_code& ec) {
    if (ec) return finish(ec, 0);  // cancelled or closed while waiting
    msg.msg_control = control_;
    msg.msg_controllen = sizeof control_;
    msg.msg_flags = 0;
    enqueue(batcher_, this);
  }

  void finish(boost::system::error_code ec, std::size_t n) {
    Handler handler(std::move(handler_));
    delete this;
    std::move(handler)(ec, n);
  }

  boost::asio::ip::tcp::socket& socket_;
  Handler handler_;
  queued* left_;
  io_batcher& batcher_;
  wait_op wait_;
  alignas(cmsghdr) unsigned char control_[CMSG_SPACE(sizeof(int))];
};

struct initiate_batched_recv {
  template <typename Handler>
  void operator()(Handler&& handler, boost::asio::ip::tcp::socket* socket,
                  boost::asio::mutable_buffer buf, queued* left, io_batcher* batcher) const {
    const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
    auto* op = new batched_recv_op<std::decay_t<Handler>>(*socket, std::forward<Handler>(handler),
                                                          buf, left, *batcher);
    op->start(is_continuation);
  }
};

}  // namespace detail

/// Like async_read_relay(socket, buf, token, left), but the recvmsg(2) is batched with the loop
/// turn's other I/O when the socket's io_context has a batcher: readiness comes from Asio's
/// reactor, the read from the flush. Cancel with cancel_io() or close().
template <typename CompletionToken>
auto async_read_batched(boost::asio::ip::tcp::socket& socket, boost::asio::mutable_buffer buf,
                        CompletionToken&& token, queued* left = nullptr) {
  if (left) *left = queued::unknown;
  detail::io_batcher* batcher = nullptr;
  auto& impl = (socket.*detail::io_object_access<boost::asio::ip::tcp::socket>::member())
                   .get_implementation();
  if (detail::own_read_path(impl, buf.size()) && detail::recv_batching())
    batcher = detail::batcher_for(socket.get_executor());
  if (batcher == nullptr)
    return async_read_relay(socket, buf, std::forward<CompletionToken>(token), left);
  return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, std::size_t)>(
      detail::initiate_batched_recv{}, token, &socket, buf, left, batcher);
}

#else

template <typename CompletionToken>
auto async_read_batched(boost::asio::ip::tcp::socket& socket, boost::asio::mutable_buffer buf,
                        CompletionToken&& token, queued* left = nullptr) {
  return async_read_relay(socket, buf, std::forward<CompletionToken>(token), left);
}

#endif

}  // namespace sluice::net
