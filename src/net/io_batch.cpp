// The per-io_context I/O batcher: one io_uring, flushed once per loop turn.
#include "net/io_batch.hpp"

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "sluice/log/log.hpp"

namespace sluice::net::detail {

namespace {

constexpr unsigned ring_entries = 256;

// Bumped whenever a batcher goes away, so that the per-thread lookup cache below cannot hand
// out a batcher of an io_context that was destroyed (and whose address was reused).
std::atomic<unsigned> batcher_generation{0};

bool disabled_by_environment() {
  const char* v = std::getenv("SLUICE_IO_URING_SEND");
  return v != nullptr && std::strcmp(v, "0") == 0;
}

// Whether this kernel's io_uring completes a MSG_DONTWAIT send on a full socket inline, with
// EAGAIN, rather than waiting for room. Everything in io_batch.hpp rests on it.
bool dontwait_sends_inline(io_uring& ring) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return false;
  int small = 4096;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  static char filler[4096];
  bool full = false;
  for (int i = 0; i < 10000 && !full; ++i)
    full = ::send(sv[0], filler, sizeof filler, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
  bool ok = false;
  if (full) {
    iovec iov{filler, sizeof filler};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_sendmsg(sqe, sv[0], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, 1);
    if (io_uring_submit(&ring) == 1) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring, &cqe) == 0 && cqe != nullptr) {
        ok = cqe->res == -EAGAIN;
        io_uring_cqe_seen(&ring, cqe);
      } else {
        // The send waits for room: closing the peer fails it; reap it before `msg` goes.
        ::close(sv[1]);
        sv[1] = -1;
        if (io_uring_wait_cqe(&ring, &cqe) == 0) io_uring_cqe_seen(&ring, cqe);
      }
    }
  }
  if (ok) {
    // A receive on a socket with nothing queued: EAGAIN, inline, too.
    char byte;
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recvmsg(sqe, sv[0], &msg, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, 2);
    ok = false;
    if (io_uring_submit(&ring) == 1) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring, &cqe) == 0 && cqe != nullptr) {
        ok = cqe->res == -EAGAIN;
        io_uring_cqe_seen(&ring, cqe);
      } else {
        ::shutdown(sv[0], SHUT_RDWR);  // ends the waiting receive; reap it before `msg` goes
        if (io_uring_wait_cqe(&ring, &cqe) == 0) io_uring_cqe_seen(&ring, cqe);
      }
    }
  }
  ::close(sv[0]);
  if (sv[1] >= 0) ::close(sv[1]);
  return ok;
}

}  // namespace

class io_batcher : public boost::asio::execution_context::service {
 public:
  static boost::asio::execution_context::id id;

  explicit io_batcher(boost::asio::io_context& context) : service(context), io_(&context) {
    if (disabled_by_environment()) return;
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
    if (!dontwait_sends_inline(ring_)) {
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
    if (!posted_) {
      posted_ = true;
      boost::asio::post(*io_, [this] { flush(); });
    }
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
    if (head_ != nullptr) {
      posted_ = true;
      boost::asio::post(*io_, [this] { flush(); });
    }
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
        if (!ready_) {
          // The ring failed: a send goes on with Asio (EAGAIN), a receive is done here.
          res[n] = -EAGAIN;
          if (list->is_recv) {
            const ssize_t r = ::recvmsg(list->fd, &list->msg, MSG_DONTWAIT);
            res[n] = r >= 0 ? static_cast<int>(r) : -errno;
          }
          continue;
        }
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // the queue is empty and as long
        if (list->is_recv)
          io_uring_prep_recvmsg(sqe, list->fd, &list->msg, MSG_DONTWAIT);
        else
          io_uring_prep_sendmsg(sqe, list->fd, &list->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, n);
        res[n] = -EAGAIN;
        ++submitted;
      }
      if (submitted > 0) {
        reap(submitted, res);
        if (!ready_) {
          // The ring failed in this enter: a receive it may not have run is done here (an
          // EAGAIN would wait for an event that may have come already).
          for (unsigned i = 0; i < n; ++i) {
            if (!batch[i]->is_recv || res[i] != -EAGAIN) continue;
            const ssize_t r = ::recvmsg(batch[i]->fd, &batch[i]->msg, MSG_DONTWAIT);
            res[i] = r >= 0 ? static_cast<int>(r) : -errno;
          }
        }
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
  static const bool on = [] {
    const char* v = std::getenv("SLUICE_IO_URING_RECV");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

void cancel_queued(io_batcher& batcher, int fd) noexcept { batcher.cancel(fd); }

}  // namespace sluice::net::detail
