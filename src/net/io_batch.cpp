// The per-io_context I/O batcher: one io_uring, flushed once per loop turn.
#include "net/io_batch.hpp"

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <boost/asio/post.hpp>

#include "sluice/log/log.hpp"

namespace sluice::net::detail {

namespace {

constexpr unsigned ring_entries = 256;

// Bumped whenever a batcher goes away, so that the per-thread lookup cache below cannot hand
// out a batcher of an io_context that was destroyed (and whose address was reused).
std::atomic<unsigned> batcher_generation{0};

// Whether the environment variable `name` is "0" (a switch turned off).
bool turned_off(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "0") == 0;
}

// Submits one operation, set up by `prep`, that has nothing to do on its socket: true when
// io_uring reports EAGAIN at once. Otherwise `unblock` ends the waiting operation, which is
// reaped before the caller's message goes.
template <typename Prep, typename Unblock>
bool eagain_inline(io_uring& ring, Prep prep, Unblock unblock) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  prep(sqe);
  io_uring_sqe_set_data64(sqe, 1);
  if (io_uring_submit(&ring) != 1) return false;
  io_uring_cqe* cqe = nullptr;
  if (io_uring_peek_cqe(&ring, &cqe) == 0 && cqe != nullptr) {
    const bool ok = cqe->res == -EAGAIN;
    io_uring_cqe_seen(&ring, cqe);
    return ok;
  }
  unblock();
  if (io_uring_wait_cqe(&ring, &cqe) == 0) io_uring_cqe_seen(&ring, cqe);
  return false;
}

// Whether this kernel's io_uring completes MSG_DONTWAIT operations that cannot proceed (a send
// on a full socket, a receive on an empty one) inline, with EAGAIN, rather than waiting.
// Everything in io_batch.hpp rests on it.
bool dontwait_is_inline(io_uring& ring) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return false;
  int small = 4096;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  static char filler[4096];
  bool full = false;
  for (int i = 0; i < 10000 && !full; ++i)
    full = ::send(sv[0], filler, sizeof filler, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
  char byte;
  iovec send_iov{filler, sizeof filler}, recv_iov{&byte, 1};
  msghdr send_msg{}, recv_msg{};
  send_msg.msg_iov = &send_iov;
  send_msg.msg_iovlen = 1;
  recv_msg.msg_iov = &recv_iov;
  recv_msg.msg_iovlen = 1;
  const bool ok =
      full &&
      eagain_inline(
          ring,
          [&](io_uring_sqe* sqe) {
            io_uring_prep_sendmsg(sqe, sv[0], &send_msg, MSG_DONTWAIT | MSG_NOSIGNAL);
          },
          [&] {  // closing the peer fails the waiting send
            ::close(sv[1]);
            sv[1] = -1;
          }) &&
      eagain_inline(
          ring,
          [&](io_uring_sqe* sqe) { io_uring_prep_recvmsg(sqe, sv[0], &recv_msg, MSG_DONTWAIT); },
          [&] { ::shutdown(sv[0], SHUT_RDWR); });  // ends the waiting receive
  ::close(sv[0]);
  if (sv[1] >= 0) ::close(sv[1]);
  return ok;
}

// A receive done here, without the ring: bytes, or -errno.
int recv_now(batched_io& op) {
  const ssize_t r = ::recvmsg(op.fd, &op.msg, MSG_DONTWAIT);
  return r >= 0 ? static_cast<int>(r) : -errno;
}

}  // namespace

class io_batcher : public boost::asio::execution_context::service {
 public:
  static boost::asio::execution_context::id id;

  explicit io_batcher(boost::asio::io_context& context) : service(context), io_(&context) {
    if (turned_off("SLUICE_IO_URING_SEND")) return;
    io_uring_params p{};
    // SUBMIT_ALL: one send's error does not stop the rest of the batch. DEFER_TASKRUN (with
    // SINGLE_ISSUER) keeps io_uring from interrupting the thread with task work.
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int r = io_uring_queue_init_params(ring_entries, &ring_, &p);
    if (r == -EINVAL) {
      p = io_uring_params{};
      p.flags = IORING_SETUP_SUBMIT_ALL;
      r = io_uring_queue_init_params(ring_entries, &ring_, &p);
    }
    if (r < 0) {
      SLUICE_LOG(debug, "socket I/O not batched: io_uring_queue_init: " << std::strerror(-r));
      return;
    }
    have_ring_ = true;
    if (!dontwait_is_inline(ring_)) {
      SLUICE_LOG(debug, "socket I/O not batched: io_uring waits on MSG_DONTWAIT operations here");
      return;
    }
    io_uring_register_ring_fd(&ring_);  // best effort: saves a file lookup per enter
    ready_ = true;
  }

  ~io_batcher() override {
    drop_queued();
    if (have_ring_) io_uring_queue_exit(&ring_);
    batcher_generation.fetch_add(1, std::memory_order_relaxed);
  }

  void shutdown() override { drop_queued(); }

  void cancel(int fd) noexcept {
    for (batched_io* op = head_; op != nullptr; op = op->next)
      if (op->fd == fd) op->cancelled = true;
  }

  bool ready() const noexcept { return ready_; }

  void enqueue(batched_io* op) noexcept {
    op->next = nullptr;
    if (tail_ != nullptr)
      tail_->next = op;
    else
      head_ = op;
    tail_ = op;
    if (!posted_) post_flush();
  }

 private:
  void drop_queued() noexcept {
    batched_io* op = std::exchange(head_, nullptr);
    tail_ = nullptr;
    while (op != nullptr) {
      batched_io* next = op->next;
      op->destroy();
      op = next;
    }
  }

  void flush() {
    // Completions queue more (the answer to a receive is a send): those are flushed here too,
    // a bounded number of rounds, before the loop goes back to epoll.
    for (int round = 0; round < 8 && head_ != nullptr; ++round) flush_queued();
    posted_ = false;
    if (head_ != nullptr) post_flush();
  }

  void post_flush() {
    posted_ = true;
    boost::asio::post(*io_, [this] { flush(); });
  }

  void flush_queued() {
    batched_io* list = std::exchange(head_, nullptr);
    tail_ = nullptr;
    while (list != nullptr) {
      batched_io* batch[ring_entries];
      int res[ring_entries];
      unsigned n = 0, submitted = 0;
      for (; list != nullptr && n < ring_entries; list = list->next, ++n) {
        batch[n] = list;
        if (list->cancelled || list->fd_now() != list->fd) {
          res[n] = -ECANCELED;  // cancelled, or closed, since queued: Asio's operation_aborted
          continue;
        }
        res[n] = -EAGAIN;  // until the ring says otherwise
        if (!ready_) continue;
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // the queue is empty and as long
        if (list->is_recv)
          io_uring_prep_recvmsg(sqe, list->fd, &list->msg, MSG_DONTWAIT);
        else
          io_uring_prep_sendmsg(sqe, list->fd, &list->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, n);
        ++submitted;
      }
      if (submitted > 0) reap(submitted, res);
      if (!ready_) {
        // No ring, or it failed in this enter: a send goes on with Asio (EAGAIN); a receive
        // the ring did not run is done here (an EAGAIN would wait for an event that may have
        // come already).
        for (unsigned i = 0; i < n; ++i)
          if (batch[i]->is_recv && res[i] == -EAGAIN) res[i] = recv_now(*batch[i]);
      }
      for (unsigned i = 0; i < n; ++i) {
        // A handler that throws must not strand the rest of the batch (Asio would leave them
        // queued; here they live only in `batch`).
        try {
          batch[i]->complete(res[i]);
        } catch (const std::exception& e) {
          SLUICE_LOG(error, "socket I/O completion: unhandled exception: " << e.what());
        }
      }
    }
  }

  // Submits the prepared operations and collects their results into `res` (by user data).
  void reap(unsigned submitted, int* res) {
    const int r = io_uring_submit(&ring_);
    if (r < 0) {
      // Nothing was taken: the operations fall back (res stays EAGAIN), and this ring is not
      // used again (its queue still holds them).
      SLUICE_LOG(warn, "socket I/O no longer batched: io_uring_submit: " << std::strerror(-r));
      ready_ = false;
      return;
    }
    if (static_cast<unsigned>(r) < submitted) {
      // Not expected with SUBMIT_ALL; the operations left in the queue would run at the next
      // enter, after their memory is gone: this ring is not entered again.
      SLUICE_LOG(warn,
                 "socket I/O no longer batched: io_uring_submit took " << r << " of " << submitted);
      ready_ = false;
    }
    unsigned got = 0;
    for (;;) {
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        res[cqe->user_data] = cqe->res;
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
      got += seen;
      if (got >= static_cast<unsigned>(r)) break;
      // Not expected (MSG_DONTWAIT operations complete inline, as checked at start-up), but
      // one the kernel still holds points into its op: wait for it rather than free it.
      if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
    }
  }

  boost::asio::io_context* io_;
  io_uring ring_{};
  bool have_ring_ = false;
  bool ready_ = false;
  bool posted_ = false;
  batched_io* head_ = nullptr;
  batched_io* tail_ = nullptr;
};

boost::asio::execution_context::id io_batcher::id;

io_batcher* batcher_of(boost::asio::io_context& context) {
  thread_local boost::asio::io_context* cached_context = nullptr;
  thread_local io_batcher* cached = nullptr;
  thread_local unsigned cached_generation = 0;
  const unsigned generation = batcher_generation.load(std::memory_order_relaxed);
  if (cached_context != &context || cached_generation != generation) {
    cached = &boost::asio::use_service<io_batcher>(context);
    cached_context = &context;
    cached_generation = generation;
  }
  return cached->ready() ? cached : nullptr;
}

void enqueue(io_batcher& batcher, batched_io* op) noexcept { batcher.enqueue(op); }

bool recv_batching() noexcept {
  static const bool on = !turned_off("SLUICE_IO_URING_RECV");
  return on;
}

void cancel_queued(io_batcher& batcher, int fd) noexcept { batcher.cancel(fd); }

}  // namespace sluice::net::detail
