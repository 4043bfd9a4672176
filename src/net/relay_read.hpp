// Socket reads that spare Asio's doomed speculative recv(2). Internal header: includes Asio.
//
// Used for every read of a cleartext TCP socket on the request path: the L4 relay, HTTP/1.1
// clients and upstreams, parked keep-alive connections, the HTTP/2 server and client. A proxy
// meets the doomed recv(2) about once per request otherwise: the upstream's answer, and the
// client's next request, are rarely there yet when the read for them starts.
//
// Asio's epoll reactor keeps, per socket and operation type, a "try the operation at once"
// flag. It is set when the socket is registered and whenever epoll reports the socket ready,
// and a read clears it only when it returns end-of-file. While it is set, a read starts with a
// recv(2), which returns EAGAIN when the peer has not sent anything since the last read; while
// it is clear, the read waits for the reactor's next readiness event (sockets are registered
// edge-triggered, so every arrival after the last recv(2) is one) with no syscall and no
// epoll_ctl. Both helpers here clear the flag, and only when nothing is left to read that
// would not bring an event of its own:
// - expect_nothing_to_read(): on a socket that is not connected yet;
// - async_read_relay(): after a read that left the receive queue empty and no FIN behind, as
//   TCP_INQ tells (Linux >= 4.18). A short read alone does not say so: recv(2) consumes a FIN
//   queued behind the data it returns, and then no event follows for the end-of-file the next
//   read must report.
//
// Thread-safety: only on the thread that runs the socket's io_context, with one thread per
// io_context (the runtime's workers), since the flag is written without the reactor's lock.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#include "net/socket_adopt.hpp"

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && \
    defined(TCP_INQ) && defined(TCP_CM_INQ)
#define SLUICE_RELAY_READ 1
#endif

namespace sluice::net {

/// What a read learned (from TCP_INQ) about the socket behind the bytes it returned.
enum class queued : unsigned char {
  unknown,  ///< no TCP_INQ report (not enabled, not this kind of read, or no bytes returned)
  nothing,  ///< the read emptied the socket, FIN included
  more,     ///< bytes or the peer's FIN are still queued
};

/// Marks `socket` (registered with its reactor, not connected yet) as having nothing to read,
/// so that its first read waits for epoll instead of trying recv(2) at once. No byte or FIN
/// can arrive before connect(2), and whatever arrives after it is an event that sets the flag
/// again or completes the waiting read. A no-op on a closed socket and off Linux.
void expect_nothing_to_read(boost::asio::ip::tcp::socket& socket) noexcept;

/// Whether the reactor expects nothing to read on `socket`: its last read emptied it (a read
/// here that TCP_INQ showed leaving nothing behind, FIN included, or expect_nothing_to_read)
/// and epoll has not reported the socket readable since. No syscall. False on a closed socket
/// and off Linux.
bool expects_nothing_to_read(boost::asio::ip::tcp::socket& socket) noexcept;

#ifdef SLUICE_RELAY_READ

namespace detail {

// What TCP_INQ reported in a recvmsg(2)'s control messages: the bytes (or FIN) still queued,
// 0 for nothing; -1 when the message carries no report (TCP_INQ not enabled on the socket).
inline int tcp_inq(msghdr& msg) noexcept {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
      int inq = 1;
      std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
      return inq;
    }
  }
  return -1;
}

// Whether a read of `size` bytes on the socket behind `impl` may bypass Asio's read: open,
// registered with the reactor, made non-blocking by adopt_nonblocking(), and a non-empty
// buffer. Otherwise Asio's own path sets O_NONBLOCK, reports the error or completes at once.
template <typename Impl>
bool own_read_path(const Impl& impl, std::size_t size) noexcept {
  return impl.socket_ >= 0 && impl.reactor_data_ != nullptr && size > 0 &&
         (impl.state_ & boost::asio::detail::socket_ops::internal_non_blocking) != 0;
}

// One recvmsg(2) per attempt; "exhausted" (which clears the flag, atomically with the read as
// far as the reactor is concerned) when TCP_INQ reports nothing left, FIN included. Without
// the TCP_INQ control message (option not enabled on the socket) it behaves like Asio's read.
template <typename Handler, typename IoExecutor>
class relay_read_op : public boost::asio::detail::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(relay_read_op);

  relay_read_op(int fd, void* data, std::size_t size, queued* left, Handler& handler,
                const IoExecutor& io_ex)
      : reactor_op(boost::system::error_code(), &relay_read_op::do_perform,
                   &relay_read_op::do_complete),
        fd_(fd),
        data_(data),
        size_(size),
        left_(left),
        handler_(static_cast<Handler&&>(handler)),
        work_(handler_, io_ex) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<relay_read_op*>(base);
    iovec iov{o->data_, o->size_};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    for (;;) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(o->fd_, &msg, 0);
      if (n > 0) {
        o->bytes_transferred_ = static_cast<std::size_t>(n);
        const int inq = tcp_inq(msg);
        if (inq < 0) return done;
        if (o->left_) *o->left_ = inq > 0 ? queued::more : queued::nothing;
        return inq == 0 ? done_and_exhausted : done;
      }
      o->bytes_transferred_ = 0;
      if (n == 0) {
        o->ec_ = boost::asio::error::eof;
        return done_and_exhausted;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
      o->ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
      return done;
    }
  }

  static void do_complete(void* owner, boost::asio::detail::operation* base,
                          const boost::system::error_code&, std::size_t) {
    auto* o = static_cast<relay_read_op*>(base);
    ptr p = {boost::asio::detail::addressof(o->handler_), o, o};
    boost::asio::detail::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // Copy the handler and results out so the op's memory is freed before the upcall.
    boost::asio::detail::binder2<Handler, boost::system::error_code, std::size_t> handler(
        o->handler_, o->ec_, o->bytes_transferred_);
    p.h = boost::asio::detail::addressof(handler.handler_);
    p.reset();
    if (owner) {  // null: the reactor is being destroyed, only free the op
      boost::asio::detail::fenced_block b(boost::asio::detail::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  int fd_;
  void* data_;
  std::size_t size_;
  queued* left_;  // set from TCP_INQ after a read; may be null
  Handler handler_;
  boost::asio::detail::handler_work<Handler, IoExecutor> work_;
};

struct initiate_relay_read {
  template <typename Handler, typename Socket>
  void operator()(Handler&& handler, Socket* socket, boost::asio::detail::reactor* reactor,
                  boost::asio::mutable_buffer buf, queued* left) const {
    if (left) *left = queued::unknown;
    using handler_type = std::decay_t<Handler>;
    using executor_type = typename Socket::executor_type;
    using op = relay_read_op<handler_type, executor_type>;
    auto& impl = (socket->*io_object_access<Socket>::member()).get_implementation();
    if (!own_read_path(impl, buf.size())) {
      socket->async_read_some(buf, std::forward<Handler>(handler));
      return;
    }
    handler_type h(std::forward<Handler>(handler));
    const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(h);
    typename op::ptr p = {boost::asio::detail::addressof(h), op::ptr::allocate(h), nullptr};
    p.p = new (p.v) op(impl.socket_, buf.data(), buf.size(), left, h, socket->get_executor());
    reactor->start_op(boost::asio::detail::reactor::read_op, impl.socket_, impl.reactor_data_, p.p,
                      is_continuation, true);
    p.v = p.p = nullptr;
  }
};

}  // namespace detail

using relay_reactor = boost::asio::detail::reactor;

/// The reactor of `io` (look it up once per worker: use_service takes a lock).
inline relay_reactor& reactor_of(boost::asio::io_context& io) {
  return boost::asio::use_service<boost::asio::detail::reactor>(io);
}

/// Like socket.async_read_some(buf, token) (same completion: error_code, bytes; eof at
/// end-of-file), but when TCP_INQ is enabled on the socket and a read leaves nothing behind,
/// the next read waits for epoll instead of trying recv(2) first. `reactor` is
/// reactor_of(the socket's io_context). Per-operation cancellation is not supported: cancel
/// with socket.cancel() or close().
/// `left` (optional), when the read completes with bytes: what TCP_INQ reported queued behind
/// them (bytes or the peer's FIN: `more`, and the next read will not wait).
template <typename Executor, typename CompletionToken>
auto async_read_relay(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket,
                      relay_reactor& reactor, boost::asio::mutable_buffer buf,
                      CompletionToken&& token, queued* left = nullptr) {
  return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, std::size_t)>(
      detail::initiate_relay_read{}, token, &socket, &reactor, buf, left);
}

namespace detail {
/// The reactor a registered socket belongs to, from the reactor's per-socket state.
relay_reactor& reactor_of_state(relay_reactor::per_descriptor_data state) noexcept;
}  // namespace detail

/// The same, with the reactor the socket is registered with (no lookup, no lock).
template <typename Executor, typename CompletionToken>
auto async_read_relay(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket,
                      boost::asio::mutable_buffer buf, CompletionToken&& token,
                      queued* left = nullptr) {
  using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
  auto& impl = (socket.*detail::io_object_access<socket_type>::member()).get_implementation();
  if (impl.reactor_data_ == nullptr) {  // closed: Asio's read reports it
    if (left) *left = queued::unknown;
    return socket.async_read_some(buf, std::forward<CompletionToken>(token));
  }
  return async_read_relay(socket, detail::reactor_of_state(impl.reactor_data_), buf,
                          std::forward<CompletionToken>(token), left);
}

#else  // not epoll, or no TCP_INQ: Asio's read

struct relay_reactor {};
inline relay_reactor& reactor_of(boost::asio::io_context&) {
  static relay_reactor r;
  return r;
}
template <typename Executor, typename CompletionToken>
auto async_read_relay(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket,
                      relay_reactor&, boost::asio::mutable_buffer buf, CompletionToken&& token,
                      queued* left = nullptr) {
  if (left) *left = queued::unknown;
  return socket.async_read_some(buf, std::forward<CompletionToken>(token));
}
template <typename Executor, typename CompletionToken>
auto async_read_relay(boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>& socket,
                      boost::asio::mutable_buffer buf, CompletionToken&& token,
                      queued* left = nullptr) {
  if (left) *left = queued::unknown;
  return socket.async_read_some(buf, std::forward<CompletionToken>(token));
}

#endif

/// Enables TCP_INQ on `socket` (for sockets not accepted from a listener, which has it
/// already): lets async_read_relay learn that a read emptied the socket. Best effort.
void enable_inq(boost::asio::ip::tcp::socket& socket) noexcept;

}  // namespace sluice::net
