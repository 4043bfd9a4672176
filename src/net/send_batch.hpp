// Socket sends gathered per loop turn and issued with one io_uring_enter(2). Internal header:
// includes Asio.
//
// A proxy sends about twice per request (the request to the upstream, the response to the
// client), each a sendmsg(2) of its own. Where a system call is dear (a paravirtualised guest
// pays about 1 us per call), the calls cost more than the copies. Here a send is queued
// instead, and one handler, posted behind the loop turn's other handlers, hands every queued
// send to the kernel in one io_uring_enter(2).
//
// The sends carry MSG_DONTWAIT: io_uring then runs each one inline, during the enter, and
// reports "would block" (EAGAIN) instead of waiting for room (checked once per ring, at
// start-up, on a full socket pair: a kernel that waits instead gets no ring). So no send is in
// the kernel's hands once the enter returns, and no io_uring operation outlives its loop turn;
// closing or cancelling a socket needs nothing new. A send that did not go out whole continues
// as an ordinary asio::async_write of the rest, on Asio's reactor.
//
// A send queued and not flushed yet is cancelled by cancel_io() (socket.cancel() alone does not
// see it), and completes with operation_aborted, unsent, as does one whose socket was closed in
// the meantime: what Asio reports for an operation pending at cancel() or close().
//
// Only for sockets of an io_context run by one thread (the runtime's workers).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>
#include <cerrno>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice::net {

namespace detail {

// One queued send: the message for the kernel and what to do with its result.
class batched_send {
 public:
  static constexpr std::size_t max_iov = 8;

  batched_send* next = nullptr;
  int fd = -1;             // the socket's fd when queued
  bool cancelled = false;  // by cancel_io() before the flush
  std::size_t total = 0;   // bytes in iov
  iovec iov[max_iov];
  msghdr msg{};

  /// The socket's fd now: -1 when it was closed since the send was queued.
  virtual int fd_now() const noexcept = 0;
  /// `res`: bytes sent, or -errno. Completes the handler or continues with Asio; frees this.
  virtual void complete(int res) = 0;
  /// The ring is going away with the send unsent: frees this without a completion.
  virtual void destroy() noexcept = 0;

 protected:
  ~batched_send() = default;
};

class send_batcher;

/// The batcher of `context` (a service, made on first use), or null when sends are not batched
/// there: not an io_context, no io_uring (kernel, seccomp, `kernel.io_uring_disabled`), a
/// kernel whose io_uring waits on MSG_DONTWAIT sends, or SLUICE_IO_URING_SEND=0 in the
/// environment.
send_batcher* batcher_of(boost::asio::io_context& context);

/// The batcher for a socket with executor `ex`, or null (see batcher_of).
template <typename Executor>
send_batcher* batcher_for(const Executor& ex) {
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
void enqueue(send_batcher& batcher, batched_send* op) noexcept;

/// Marks the sends queued for `fd` as cancelled: the flush completes them unsent.
void cancel_queued(send_batcher& batcher, int fd) noexcept;

template <typename Socket, typename Handler>
class batched_send_op final : public batched_send {
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
                  send_batcher* batcher) const {
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
    if (++n > batched_send::max_iov) return false;
    bytes += b.size();
  }
  return bytes > 0;
}

}  // namespace detail

/// socket.cancel(ec), and the same for the sends queued on `socket` for the loop turn's flush.
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
  detail::send_batcher* batcher = nullptr;
  if (socket.is_open() && detail::fits_batch(buffers))
    batcher = detail::batcher_for(socket.get_executor());
  if (batcher == nullptr)
    return boost::asio::async_write(socket, buffers, std::forward<CompletionToken>(token));
  return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, std::size_t)>(
      detail::initiate_batched_send{}, token, &socket, buffers, batcher);
}

}  // namespace sluice::net
