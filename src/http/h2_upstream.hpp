// HTTP/1.1 requests to HTTP/2 clusters (protocol h2c or h2): an upstream HTTP/2 connection that
// carries one stream at a time for the HTTP/1.1 session using it, and a per-worker pool of idle
// ones. Internal header: Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "sluice/h2/session.hpp"
#include "upstream_pool.hpp"

namespace sluice::http {

/// One HTTP/2 client connection: the socket (an upstream_conn, so that the session's deadlines
/// cancel it like an HTTP/1.1 one), the protocol state, and the events of its current stream.
/// Response body bytes are kept in `data` and acknowledged (consume) only once relayed, so the
/// stream's receive window bounds them.
class h2_upstream final : public h2::session_handler {
 public:
  h2_upstream(std::shared_ptr<upstream_conn> c, const h2::settings& s)
      : conn(std::move(c)), h2(h2::role::client, *this, s) {}

  /// HTTP/2 over TLS (protocol h2): wraps the connected socket; the handshake is the caller's.
  /// `key` names the TLS settings (a pooled connection serves only the same ones).
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>& use_tls(
      boost::asio::ssl::context& ctx, std::string key) {
    tls_key = std::move(key);
    return tls.emplace(conn->socket, ctx);
  }

  /// Writes everything the session has pending.
  boost::asio::awaitable<boost::system::error_code> flush();
  /// Reads once from the socket, feeds the session, then flushes what that produced (SETTINGS
  /// and PING acknowledgements, window updates). A protocol error closes the connection.
  boost::asio::awaitable<boost::system::error_code> read_more();

  /// Reads, without waiting, what the upstream sent while the connection idled (a GOAWAY, a
  /// PING, its close) and feeds it to the session. False: the connection is closed or broken.
  bool catch_up();
  /// Starts a stream: clears the previous stream's events.
  void begin(std::int32_t stream) {
    id = stream;
    headers.clear();
    have_headers = false;
    data.clear();
    ended = closed = false;
    close_code = 0;
    received = false;
  }
  /// Another stream can start: the connection is open, healthy and not going away.
  bool usable() const noexcept {
    return conn->socket.is_open() && !h2.failed() && !h2.goaway_received() && !h2.goaway_sent() &&
           h2.want_read() && h2.can_open_stream();
  }

  std::shared_ptr<upstream_conn> conn;
  std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls;
  std::string tls_key;  // empty: cleartext (h2c)
  h2::session h2;
  std::string out;  // bytes being written

  // The current stream.
  std::int32_t id = -1;
  h2::header_list headers;  // the final (non-1xx) response headers
  bool have_headers = false;
  std::string data;         // body bytes received, not relayed yet
  bool ended = false;       // END_STREAM from the upstream
  bool closed = false;      // the stream is gone (close_code: its RST_STREAM code, or 0)
  std::uint32_t close_code = 0;
  bool received = false;    // any frame of the stream arrived
  std::int32_t goaway_last = 0x7fffffff;  // GOAWAY's last stream id: later ones unprocessed

  // ---- h2::session_handler ----
  void on_headers(std::int32_t stream, h2::header_list& h, bool trailers, bool end) override;
  void on_data(std::int32_t stream, std::span<const std::uint8_t> bytes) override;
  void on_end_stream(std::int32_t stream) override;
  void on_stream_close(std::int32_t stream, std::uint32_t code) override;
  void on_goaway(std::int32_t last_stream, std::uint32_t) override { goaway_last = last_stream; }
};

/// Idle HTTP/2 connections of one worker, by backend (most recently used first). Single-
/// threaded. A pooled connection holds a snapshot that keeps its backend alive (see
/// upstream_pool). Nothing is read while a connection idles: what came in the meantime (a
/// GOAWAY, the upstream's close) is read when the connection is taken (catch_up), so that a
/// request, idempotent or not, does not go out on a connection known to be going away.
class h2_upstream_pool {
 public:
  h2_upstream_pool() = default;
  h2_upstream_pool(const h2_upstream_pool&) = delete;
  h2_upstream_pool& operator=(const h2_upstream_pool&) = delete;
  ~h2_upstream_pool() { clear(); }

  /// An idle connection to `b` with TLS settings `tls_key` ("" for h2c), or null.
  std::shared_ptr<h2_upstream> take(core::backend* b, std::string_view tls_key);
  void put(std::shared_ptr<h2_upstream> u, std::uint32_t max_idle,
           std::chrono::milliseconds idle_timeout);
  /// Closes connections idle past their timeout.
  void sweep(std::chrono::steady_clock::time_point now);
  /// Closes every idle connection; with `close_pool`, later puts close too (drain).
  void clear(bool close_pool = false);

 private:
  std::unordered_map<core::backend*, std::vector<std::shared_ptr<h2_upstream>>> idle_;
  bool closed_ = false;
};

}  // namespace sluice::http
