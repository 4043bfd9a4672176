#include "worker.hpp"

#include <algorithm>

#include <charconv>
#include <cstring>

#include <boost/asio/bind_allocator.hpp>

#include "field_allocator.hpp"
#include "net/relay_read.hpp"
#include "net/socket_rebind.hpp"
#include "sluice/core/clock.hpp"

namespace sluice::http {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {
// The deadline scan runs at a quarter of the smallest timeout among live sessions (so a
// timeout fires at most 25 % late), at most every 5 ms and at least every 100 ms.
std::chrono::milliseconds scan_period(std::chrono::milliseconds smallest) {
  return std::clamp<std::chrono::milliseconds>(smallest / 4, 5ms, 100ms);
}
// While draining, a parked keep-alive connection is closed once it has been idle this long:
// closing one whose client is sending its next request right now would lose that request.
constexpr auto drain_idle = 2s;
}  // namespace

packed_address packed_address::peer_of(const tcp::socket& s) {
  packed_address a;
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return a;
  auto ip = ep.address();
  if (ip.is_v6() && ip.to_v6().is_v4_mapped())
    ip = asio::ip::make_address_v4(asio::ip::v4_mapped, ip.to_v6());
  if (ip.is_v4()) {
    a.family = 4;
    auto b = ip.to_v4().to_bytes();
    std::memcpy(a.bytes, b.data(), b.size());
  } else {
    a.family = 6;
    auto b = ip.to_v6().to_bytes();
    std::memcpy(a.bytes, b.data(), b.size());
  }
  return a;
}

std::string packed_address::to_string() const {
  if (family == 4) {  // the common case, without inet_ntop
    char buf[16];
    char* out = buf;
    for (int i = 0; i < 4; ++i) {
      if (i) *out++ = '.';
      out = std::to_chars(out, buf + sizeof buf, bytes[i]).ptr;
    }
    return std::string(buf, out);
  }
  if (family == 6) {
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), bytes, b.size());
    return asio::ip::address_v6(b).to_string();
  }
  return {};
}

parked_conn::~parked_conn() {
  if (linked && worker) worker->unpark(this);
}

worker_state::worker_state(asio::io_context& io, std::shared_ptr<log::access_log> access_log,
                           std::shared_ptr<metrics::registry> metrics, unsigned worker_index)
    : io_(io), index_(worker_index), access_(std::move(access_log)),
      registry_(std::move(metrics)),
      metrics_(registry_ ? &registry_->shard(worker_index) : nullptr),
      server_wake_(io, steady::time_point::max()), tick_(io), scan_(io) {}

worker_state::~worker_state() {
  // Parked connections still pending (the io_context outlives this): they close when their
  // handlers are destroyed, without touching this.
  for (auto& l : parked_)
    for (parked_conn* p = l.head; p; p = p->next) {
      p->linked = false;
      p->worker = nullptr;
    }
}

void worker_state::start_tick() {
  std::weak_ptr<worker_state> weak = weak_from_this();
  tick_.expires_after(1s);
  tick_.async_wait([weak](error_code ec) {
    auto w = weak.lock();
    if (ec || !w) return;
    w->on_tick();
    if (!w->stopped_) w->start_tick();
  });
}

void worker_state::on_tick() {
  flush_access_log();
  pool_.sweep(steady::now());
  h2_pool_.sweep(steady::now());
  if (draining_) {
    drain_sessions();
    if (active_.load(std::memory_order_relaxed) == 0) {
      stopped_ = true;
      idle_servers_ = 0;
      server_wake_.cancel();  // idle servers end
    }
  }
}

// One drain sweep over live sessions and parked connections (at the start of the drain and
// every tick). A parked connection that has not sent its first request is not idle: its client
// connected before the listener closed (or before a binary upgrade took the socket over) and
// gets an answer.
void worker_state::drain_sessions() {
  for (session_base* s = sessions_; s;) {
    session_base* next = s->next_;
    s->drain_now();
    s = next;
  }
  auto now = steady::now();
  for (auto& l : parked_) {
    for (parked_conn* p = l.head; p;) {
      parked_conn* next = p->next;
      bool long_idle = l.timeout <= 0ms || p->deadline - l.timeout + drain_idle <= now;
      if (!p->first && long_idle) close_parked(p);
      p = next;
    }
  }
}

void worker_state::drain() {
  draining_ = true;
  pool_.clear(true);
  h2_pool_.clear(true);
  flush_access_log();
  drain_sessions();
}

void worker_state::link(session_base* s, std::chrono::milliseconds min_timeout) {
  s->next_ = sessions_;
  if (sessions_) sessions_->prev_ = s;
  sessions_ = s;
  arm_scan(steady::now() + scan_period(min_timeout));
}

void worker_state::unlink(session_base* s) {
  if (s->prev_) s->prev_->next_ = s->next_;
  else sessions_ = s->next_;
  if (s->next_) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
}

void worker_state::opened(std::size_t listener_index) {
  active_.fetch_add(1, std::memory_order_relaxed);
  if (metrics_) metrics_->on_connection_open(listener_index);
}

void worker_state::closed(std::size_t listener_index, bool count_metrics) {
  active_.fetch_sub(1, std::memory_order_relaxed);
  if (metrics_ && count_metrics) metrics_->on_connection_close(listener_index);
}

void worker_state::park(std::unique_ptr<parked_conn> rec, tcp::socket socket,
                        std::shared_ptr<const listener_state> listener,
                        const packed_address& client, std::uint32_t requests, bool first,
                        std::chrono::milliseconds timeout) {
  auto s = net::rebind_socket<parked_socket>(std::move(socket), io_.get_executor());
  auto p = rec ? std::move(rec) : std::make_unique<parked_conn>(parked_socket(io_.get_executor()));
  p->socket = std::move(s);
  p->worker = this;
  p->listener = std::move(listener);
  p->client = client;
  p->requests = requests;
  p->first = first;
  if (timeout < 0ms) timeout = 0ms;
  const auto now = core::coarse_now();
  p->deadline = timeout > 0ms ? now + timeout : steady::time_point::max();
  p->parked_ms = core::ms32(now);

  std::uint16_t li = 0;
  while (li < parked_.size() && parked_[li].timeout != timeout) ++li;
  if (li == parked_.size()) parked_.push_back(parked_list{timeout, nullptr, nullptr});
  auto& l = parked_[li];
  p->list = li;
  p->prev = l.tail;
  p->next = nullptr;
  if (l.tail) l.tail->next = p.get();
  else l.head = p.get();
  l.tail = p.get();
  p->linked = true;
  if (timeout > 0ms) arm_scan(p->deadline);

  // The read's operation comes from the per-thread block lists: a block of its own size, not
  // a larger one Asio's per-thread cache may hold from some other operation.
  auto* raw = p.get();
  // A read that empties the socket lets the session's next read wait for epoll without trying
  // recv(2) first (net/relay_read.hpp).
  net::async_read_relay(
      raw->socket, asio::buffer(raw->bytes, parked_bytes),
      asio::bind_allocator(field_allocator<void>{},
                           [p = std::move(p)](const error_code& ec, std::size_t n) mutable {
                             resume_parked(std::move(p), ec, n);
                           }));
}

void worker_state::unpark(parked_conn* p) {
  if (!p->linked) return;
  auto& l = parked_[p->list];
  if (p->prev) p->prev->next = p->next;
  else l.head = p->next;
  if (p->next) p->next->prev = p->prev;
  else l.tail = p->prev;
  p->prev = p->next = nullptr;
  p->linked = false;
}

// Timed out or drained: its read completes with operation_aborted and resume_parked closes it
// (or, had bytes arrived already, serves them).
void worker_state::close_parked(parked_conn* p) {
  unpark(p);
  error_code ec;
  p->socket.cancel(ec);
}

void worker_state::arm_scan(steady::time_point at) {
  if (at >= scan_at_) return;
  scan_at_ = at;
  scan_.expires_at(at);
  std::weak_ptr<worker_state> weak = weak_from_this();
  scan_.async_wait([weak](error_code ec) {
    if (ec) return;  // re-armed earlier (that wait is pending), or shutting down
    if (auto w = weak.lock()) w->on_scan();
  });
}

void worker_state::on_scan() {
  scan_at_ = steady::time_point::max();
  auto now = steady::now();
  auto smallest = std::chrono::milliseconds::max();
  for (session_base* s = sessions_; s;) {
    session_base* next = s->next_;
    smallest = std::min(smallest, s->check_deadlines(now));
    s = next;
  }
  auto next_at = steady::time_point::max();
  for (auto& l : parked_) {
    while (l.head && l.head->deadline <= now) close_parked(l.head);
    if (l.head) next_at = std::min(next_at, l.head->deadline);
  }
  if (sessions_) next_at = std::min(next_at, now + scan_period(smallest));
  if (next_at != steady::time_point::max()) arm_scan(next_at);
}

}  // namespace sluice::http
