// Per-worker state of the HTTP/1.1 data plane: the registry of live sessions, the deadline
// scan that enforces their timeouts, and the parked connections (idle keep-alive connections,
// and fresh ones that have not sent a byte yet, held without a session).
// Internal header: includes Asio.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "proxy.hpp"
#include "sluice/log/access_log.hpp"
#include "sluice/metrics/registry.hpp"
#include "h2_upstream.hpp"
#include "upstream_pool.hpp"

namespace sluice::http {

using steady = std::chrono::steady_clock;

/// What the worker needs of a live session, whatever its stream type.
class session_base {
 public:
  /// Drain sweep (at the drain's start, then every second while it lasts).
  virtual void drain_now() = 0;
  /// The deadline scan: cancels the I/O of a session past a deadline. Returns the session's
  /// smallest timeout (the scan runs at a fraction of the smallest one among live sessions).
  virtual std::chrono::milliseconds check_deadlines(steady::time_point now) = 0;
  session_base* prev_ = nullptr;
  session_base* next_ = nullptr;

 protected:
  ~session_base() = default;
};

/// A socket on the worker's io_context executor: no type-erased executor in the socket or in
/// its pending operation, so a parked connection stays small.
using parked_socket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

/// A client address kept in 17 bytes (a parked connection's) instead of its text.
struct packed_address {
  std::uint8_t family = 0;  ///< 0: unknown, 4 or 6
  std::uint8_t bytes[16] = {};
  /// From the peer of a connected socket (IPv4-mapped IPv6 addresses become IPv4).
  static packed_address peer_of(const boost::asio::ip::tcp::socket& s);
  /// The text form, as in X-Forwarded-For and the access log ("" when unknown).
  std::string to_string() const;
};

/// Bytes a parked connection reads into its own storage when data arrives. A request of up to
/// this size is taken in that one read; a longer one is read on at once, without a wait.
inline constexpr std::size_t parked_bytes = 48;

/// A cleartext connection between requests (or before its first): no session, no coroutine, no
/// buffer besides `bytes`; one pending read. Owned by the read's completion handler, and linked
/// in one of its worker's parked lists (by timeout) until the read completes.
struct parked_conn {
  explicit parked_conn(parked_socket s) : socket(std::move(s)) {}
  ~parked_conn();  // leaves its worker's list if still in one
  parked_conn(const parked_conn&) = delete;
  parked_conn& operator=(const parked_conn&) = delete;
  parked_socket socket;
  worker_state* worker = nullptr;  ///< null once the worker is gone (shutdown)
  std::shared_ptr<const listener_state> listener;
  steady::time_point deadline;  ///< idle timeout (or header timeout before the first request)
  parked_conn* prev = nullptr;
  parked_conn* next = nullptr;
  std::uint32_t requests = 0;   ///< requests served on the connection so far
  std::uint16_t list = 0;       ///< index into worker_state::parked_
  packed_address client;
  bool first = false;           ///< no request yet
  std::uint8_t got = 0;         ///< bytes the read brought (for the server that takes it)
  bool linked = false;
  std::uint32_t parked_ms = 0;  ///< core::coarse_ms() when parked: how long it idled
  char bytes[parked_bytes];
};

class worker_state : public std::enable_shared_from_this<worker_state> {
 public:
  worker_state(boost::asio::io_context& io, std::shared_ptr<log::access_log> access_log,
               std::shared_ptr<metrics::registry> metrics, unsigned worker_index);
  ~worker_state();
  worker_state(const worker_state&) = delete;
  worker_state& operator=(const worker_state&) = delete;

  void start_tick();
  void drain();

  // Live sessions.
  void link(session_base* s, std::chrono::milliseconds min_timeout);
  void unlink(session_base* s);

  // Connections. `opened` when accepted, `closed` when its socket closes for good; a
  // connection counts from one to the other whether it has a session or is parked.
  void opened(std::size_t listener_index);
  /// `count_metrics` false: the connection was handed to the HTTP/2 server, which counts it.
  void closed(std::size_t listener_index, bool count_metrics = true);

  /// Parks a cleartext connection: waits for its next bytes without a session, under
  /// `timeout` (the listener's idle timeout, or its header timeout when `first`). `rec`: the
  /// record it was parked in last time (kept by its session), or null for a new one.
  void park(std::unique_ptr<parked_conn> rec, boost::asio::ip::tcp::socket socket,
            std::shared_ptr<const listener_state> listener, const packed_address& client,
            std::uint32_t requests, bool first, std::chrono::milliseconds timeout);

  /// Takes `p` out of its parked list (its read completed, or it is being destroyed).
  void unpark(parked_conn* p);

  void flush_access_log() {
    if (access_.enabled()) access_.flush();
  }

  boost::asio::io_context& io_;
  unsigned index_;  // the worker's number: its snapshot caches and statistics blocks
  upstream_pool pool_;
  h2_upstream_pool h2_pool_;  // HTTP/1.1 requests to h2c clusters
  log::access_log::writer access_;
  std::atomic<std::size_t> active_{0};  // open connections (sessions and parked)
  bool draining_ = false;
  bool stopped_ = false;
  std::shared_ptr<metrics::registry> registry_;  // keeps the shard alive
  metrics::worker_shard* metrics_;               // this worker's shard, or null

  // Cleartext servers (session.cpp): a server is a session with its coroutine that serves one
  // woken connection after another. Woken connections wait in `ready_` for an idle server;
  // idle servers wait on `server_wake_` (it never expires: cancel_one wakes one of them).
  std::deque<std::unique_ptr<parked_conn>> ready_;
  boost::asio::steady_timer server_wake_;
  std::size_t idle_servers_ = 0;

 private:
  // Parked connections with the same timeout, in the order they were parked: by deadline.
  struct parked_list {
    std::chrono::milliseconds timeout{0};
    parked_conn* head = nullptr;
    parked_conn* tail = nullptr;
  };

  void on_tick();
  void drain_sessions();
  void close_parked(parked_conn* p);
  void arm_scan(steady::time_point at);
  void on_scan();

  boost::asio::steady_timer tick_;
  boost::asio::steady_timer scan_;
  steady::time_point scan_at_ = steady::time_point::max();  // when scan_ fires; max: not set
  session_base* sessions_ = nullptr;  // intrusive list of live sessions
  std::vector<parked_list> parked_;
};

/// Completion of a parked connection's read (session.cpp): a session takes the connection
/// over with the bytes read, or the connection closes.
void resume_parked(std::unique_ptr<parked_conn> p, const boost::system::error_code& ec,
                   std::size_t n);

}  // namespace sluice::http
