// Per-worker keep-alive pool of idle upstream HTTP/1.1 connections. Internal header: Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "sluice/core/backend.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::http {

/// One upstream connection. Owned by a session while in use, by the pool while idle.
struct upstream_conn {
  explicit upstream_conn(boost::asio::any_io_executor ex) : socket(std::move(ex)) {}
  boost::asio::ip::tcp::socket socket;
  boost::beast::flat_buffer buffer;  ///< bytes read from the upstream, not yet used
  core::backend* backend = nullptr;
  /// Keeps `backend` alive while the connection is pooled, even after the cluster dropped it.
  std::shared_ptr<const pool::snapshot> keep;
  std::chrono::steady_clock::time_point idle_since{};
  std::chrono::milliseconds idle_timeout{0};
  std::uint64_t idle_epoch = 0;  ///< bumped on every put/take; stale watch completions compare it
  bool pooled = false;
  bool watched = false;  ///< a readability watch is pending
  /// The last read of the answer before it was pooled emptied the socket (TCP_INQ): any epoll
  /// event since (the reactor's read flag set again) means the upstream closed it or sent junk.
  bool quiet = false;
};

/// Single-threaded: used only on its worker's thread. Connections idle for `watch_after` or
/// longer are watched for readability (an upstream closing or sending junk while idle gets the
/// connection dropped at once, as nginx does); busy connections, reused within that time, are
/// not, because arming the watch costs an epoll_ctl per request with Asio's reactor. Within
/// that window `take` still skips a connection the reactor has seen readable since it was
/// pooled (no syscall: the reactor's own flag, see net::expects_nothing_to_read); one closed
/// just as it is taken is caught by the session's retry on a fresh connection.
/// `sweep` (called about every second) arms the watches and drops connections past their idle
/// timeout. Keyed by backend
/// pointer; every pooled connection holds a snapshot that keeps its backend alive, so a key
/// can never be a recycled address.
class upstream_pool {
 public:
  upstream_pool() = default;
  upstream_pool(const upstream_pool&) = delete;
  upstream_pool& operator=(const upstream_pool&) = delete;
  ~upstream_pool() { clear(); }

  /// An idle connection to `b` (most recently used first), or null.
  std::shared_ptr<upstream_conn> take(core::backend* b);
  /// Hands a connection that finished a clean exchange back; closes it instead when the
  /// backend already has `max_idle` idle connections or the pool is closed. `quiet`: the
  /// answer's last read emptied the socket (see upstream_conn::quiet).
  void put(std::shared_ptr<upstream_conn> c, std::uint32_t max_idle,
           std::chrono::milliseconds idle_timeout, bool quiet = false);
  /// Closes connections idle for longer than their timeout.
  void sweep(std::chrono::steady_clock::time_point now);
  /// Closes every idle connection; with `close_pool`, later puts close too (drain).
  void clear(bool close_pool = false);
  std::size_t idle() const noexcept;

  static constexpr std::chrono::milliseconds watch_after{1000};

 private:
  void watch(const std::shared_ptr<upstream_conn>& c);
  void remove(upstream_conn* c);

  std::unordered_map<core::backend*, std::vector<std::shared_ptr<upstream_conn>>> idle_;
  bool closed_ = false;
};

}  // namespace sluice::http
