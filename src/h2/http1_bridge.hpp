// HTTP/2 requests relayed over HTTP/1.1 upstream connections: the per-worker keep-alive pool and
// one exchange per translated stream. Internal header: includes Asio.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "http/upstream_pool.hpp"
#include "sluice/h2/session.hpp"
#include "sluice/h2/translate.hpp"
#include "sluice/pool/cluster.hpp"
#include "sluice/pool/lease.hpp"

namespace sluice::h2 {

/// The HTTP/2 stream an exchange answers (implemented by the proxy's call). Called on the
/// worker's thread, only until http1_exchange::detach().
class http1_port {
 public:
  /// An attempt on backend `b` (of `snap`, which keeps it alive) begins.
  virtual void on_attempt(core::backend* b, const std::shared_ptr<const pool::snapshot>& snap) = 0;
  /// The final response head (1xx are dropped); `end_stream`: no body follows (HEAD, 204, 304,
  /// an empty body).
  virtual void on_response(header_list& headers, bool end_stream) = 0;
  virtual void on_response_data(std::span<const std::uint8_t> data) = 0;
  /// The body is complete; `trailers` from a chunked body, or null.
  virtual void on_response_end(const header_list* trailers) = 0;
  /// Response bytes queued toward the client and not yet framed: the exchange reads no more from
  /// the upstream while this is above its bound.
  virtual std::size_t response_queued() = 0;
  /// `n` more request body bytes are done with (written upstream, or dropped): open the
  /// client's flow-control windows by as much.
  virtual void on_request_consumed(std::size_t n) = 0;
  /// The exchange is over without a (complete) response: answer `status` when no response was
  /// started, else reset the stream.
  virtual void on_failure(unsigned status, std::string_view message) = 0;

 protected:
  ~http1_port() = default;
};

/// The ring_hash key of a request (`on`: the cluster's hash_on), as the HTTP/1.1 proxy computes
/// it: a header's value (absent: empty), a cookie's value (absent: the client address), or the
/// client address. Does not allocate.
std::uint64_t request_hash(const config::hash_on& on, const header_list& req,
                           std::string_view client_ip) noexcept;

/// One worker's idle keep-alive HTTP/1.1 connections for HTTP/2 streams, swept about once a
/// second while it holds any. Single-threaded (its worker's thread).
class http1_pool : public std::enable_shared_from_this<http1_pool> {
 public:
  explicit http1_pool(boost::asio::any_io_executor ex) : timer_(std::move(ex)) {}

  std::shared_ptr<http::upstream_conn> take(core::backend* b) { return pool_.take(b); }
  /// Keeps `c` (which just finished a clean exchange for a cluster configured by `cfg`).
  void put(std::shared_ptr<http::upstream_conn> c, const config::cluster& cfg);
  /// Drain: closes the idle connections; later puts close theirs.
  void close() { pool_.clear(true); }
  std::size_t idle() const noexcept { return pool_.idle(); }

 private:
  void tick();
  http::upstream_pool pool_;
  boost::asio::steady_timer timer_;
  bool ticking_ = false;
};

/// What an exchange needs besides the request.
struct http1_params {
  std::shared_ptr<pool::cluster> cluster;  ///< the routed http1 cluster (kept alive)
  pool::snapshot_cache* cache = nullptr;   ///< this worker's view of it (read at start only)
  std::shared_ptr<http1_pool> pool;
  forward_info forward;  ///< views: copied at start
  /// Longest wait for the client to take queued response bytes (the listener's send timeout);
  /// 0: no limit.
  std::chrono::milliseconds send_timeout{0};
};

/// Relays one HTTP/2 request to a backend of an http1 cluster and its response back: picks a
/// backend by the cluster's policy, takes a pooled connection or connects (the next backend on a
/// connect failure, up to max_tries; a replayable idempotent request also on a failure before
/// the response), writes the translated head and streams the body (window opened only as bytes
/// reach the upstream), reads the response with Beast's parser under the cluster's read timeout
/// and streams it into the HTTP/2 stream, reading no further while the client lags. The
/// connection goes back to the pool after a complete keep-alive exchange; any error closes it.
/// Single-threaded (the worker's thread).
class http1_exchange : public std::enable_shared_from_this<http1_exchange> {
 public:
  /// Starts the exchange for request headers `request` (`end_stream`: no body). Failures,
  /// including an untranslatable request (400), are reported through `port`.
  static std::shared_ptr<http1_exchange> start(boost::asio::any_io_executor ex,
                                               const header_list& request, bool end_stream,
                                               http1_params params, http1_port& port);

  http1_exchange(boost::asio::any_io_executor ex, http1_params params, http1_port& port);

  /// Request body bytes from the client (counted against its window until acknowledged through
  /// http1_port::on_request_consumed).
  void push_body(std::span<const std::uint8_t> data);
  /// The client ended its side; `trailers` go into the last chunk of a chunked body.
  void end_body(const header_list* trailers);
  /// The client took some queued response bytes.
  void wake();
  /// The stream is gone (client reset, connection closed): the upstream connection is closed,
  /// the port is never called again. Returns the request body bytes received but not yet
  /// acknowledged, for the caller to release from the connection window.
  std::size_t detach();

 private:
  enum class result { done, failed, over };

  boost::asio::awaitable<void> run(std::shared_ptr<http1_exchange> self);
  boost::asio::awaitable<result> attempt(http::upstream_conn& conn, pool::lease& lease,
                                         bool reused, bool& stale, unsigned& fail_status);
  boost::asio::awaitable<void> write_request(http::upstream_conn& conn);
  boost::asio::awaitable<result> read_response(http::upstream_conn& conn, pool::lease& lease,
                                               bool reused, bool& stale, unsigned& fail_status);
  void arm(boost::asio::steady_timer& t, std::chrono::milliseconds d);
  void acknowledge(std::uint64_t upto);
  void finish_body_bookkeeping();
  void fail(unsigned status, std::string_view message);

  boost::asio::any_io_executor ex_;
  http1_params params_;
  http1_port* port_;
  http1_request head_;
  std::string client_ip_, proto_;
  bool idempotent_ = false;
  bool head_request_ = false;
  std::uint64_t hash_ = 0;  // ring_hash key

  // Request body: `pending_` is what this attempt has still to write; `replay_` everything
  // received while it is small (a failed attempt can then be replayed elsewhere).
  std::string pending_, writing_, replay_;
  bool replayable_ = true;
  bool body_ended_ = false;
  header_list request_trailers_;
  std::uint64_t received_ = 0, acked_ = 0, sent_ = 0;

  std::shared_ptr<http::upstream_conn> conn_;  // the connection of the current attempt
  boost::asio::steady_timer body_signal_, drain_signal_, read_timer_, write_timer_;
  bool timed_out_ = false;
  bool detached_ = false;
  bool response_started_ = false;
  bool response_done_ = false;
  bool attempt_over_ = false;  // the response side ended: the body writer stops
  bool request_written_ = false;
  bool writer_running_ = false;
  bool writer_failed_ = false;
};

}  // namespace sluice::h2
