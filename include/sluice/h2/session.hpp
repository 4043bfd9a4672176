// Sans-I/O HTTP/2 session (server or client role) over nghttp2: bytes in, events out, bytes out.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct nghttp2_session;

namespace sluice::h2 {

struct header {
  std::string name;
  std::string value;
};
using header_list = std::vector<header>;

/// The first value of `name` in `h`, or an empty view.
std::string_view find_header(const header_list& h, std::string_view name) noexcept;

enum class role { server, client };

/// HTTP/2 error codes used here (RFC 9113 section 7).
namespace error {
inline constexpr std::uint32_t no_error = 0x0, protocol_error = 0x1, internal_error = 0x2,
                               refused_stream = 0x7, cancel = 0x8, enhance_your_calm = 0xb;
}

/// What this side advertises and enforces.
struct settings {
  std::uint32_t max_concurrent_streams = 100;      ///< streams the peer may open (server)
  std::uint32_t initial_window_size = 256 * 1024;  ///< receive window per stream: the bound on
                                                   ///< bytes buffered per stream direction
  std::uint32_t connection_window_size = 4 * 1024 * 1024;  ///< receive window per connection
  std::uint32_t max_header_list_size = 64 * 1024;  ///< decoded header bytes per block; more →
                                                   ///< stream reset
  std::uint64_t reset_burst = 1000;  ///< rapid reset (CVE-2023-44487), server only: RST_STREAM
  std::uint64_t reset_rate = 33;     ///< token bucket, burst + per second; empty → GOAWAY
  std::size_t max_continuations = 8;  ///< CONTINUATION frames per header block; more → GOAWAY
};

/// Receives the events of one session. Called from inside session::receive() / send(); a
/// handler may call the submit/send/consume/reset functions of this or another session, but
/// must not destroy the session it is called from.
class session_handler {
 public:
  virtual ~session_handler() = default;
  /// A complete header block: request (server) or response (client) headers, or trailers.
  /// `headers` may be moved from. on_end_stream() follows when the block ended the stream.
  virtual void on_headers(std::int32_t id, header_list& headers, bool trailers,
                          bool end_stream) = 0;
  /// Body bytes. They count against the receive window until consume(id, n) is called.
  virtual void on_data(std::int32_t id, std::span<const std::uint8_t> data) = 0;
  /// The peer finished its side of the stream.
  virtual void on_end_stream(std::int32_t id) {}
  /// The stream is gone (both sides done, or reset: `error_code` != 0).
  virtual void on_stream_close(std::int32_t id, std::uint32_t error_code) = 0;
  /// `n` bytes given to send_data() left the outbound buffer for the wire.
  virtual void on_data_sent(std::int32_t id, std::size_t n) {}
  virtual void on_goaway(std::int32_t last_stream_id, std::uint32_t error_code) {}
  virtual void on_remote_settings() {}
};

/// One HTTP/2 connection's protocol state. Owns no socket: feed it what was read with
/// receive(), write what send() produces. Automatic flow control is off: received DATA keeps
/// the windows closed until consume(), so a proxy opens them only as the other side accepts the
/// bytes, which bounds every buffer by the windows. Not thread-safe (one connection, one thread).
class session {
 public:
  session(role r, session_handler& handler, const settings& s = {});
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  role side() const noexcept { return role_; }

  /// Feeds bytes read from the peer. False on a connection error (bad preface, flood, protocol
  /// violation): the session has queued its GOAWAY; flush send() and close.
  bool receive(std::span<const std::uint8_t> bytes);
  bool receive(std::string_view bytes) {
    return receive({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  }
  /// Appends pending output to `out` until nothing is pending or `out` reaches `limit` bytes.
  /// Returns the number of bytes appended; a fatal error sets failed().
  std::size_t send(std::string& out, std::size_t limit = 64 * 1024);
  /// False once the connection is finished both ways (GOAWAY exchanged, or fatal error).
  bool want_read() const noexcept;
  bool want_write() const noexcept;
  bool failed() const noexcept { return failed_; }

  /// Client: opens a stream. Returns its id, or -1 (no stream ids left, GOAWAY received).
  /// Without `end_stream` the body follows through send_data() / end_stream().
  std::int32_t submit_request(const header_list& headers, bool end_stream);
  /// Server: answers stream `id`.
  bool submit_response(std::int32_t id, const header_list& headers, bool end_stream);
  /// Queues body bytes on a stream opened without end_stream (copied; bounded by the peer's
  /// windows on the producing side, since it is only consumed as it drains here).
  bool send_data(std::int32_t id, std::span<const std::uint8_t> data);
  bool send_data(std::int32_t id, std::string_view data) {
    return send_data(id, {reinterpret_cast<const std::uint8_t*>(data.data()), data.size()});
  }
  /// Ends our side of the stream after the queued bytes, with trailers when given.
  bool end_stream(std::int32_t id, const header_list* trailers = nullptr);
  /// Bytes queued by send_data() not yet framed.
  std::size_t outbound_size(std::int32_t id) const noexcept;
  /// Opens the receive windows by `n` bytes of stream `id` (0: connection only).
  void consume(std::int32_t id, std::size_t n);
  void reset(std::int32_t id, std::uint32_t error_code);
  /// GOAWAY with the last stream we processed: graceful with no_error (open streams finish).
  void goaway(std::uint32_t error_code);
  bool goaway_sent() const noexcept { return goaway_sent_; }
  bool goaway_received() const noexcept { return goaway_received_; }
  /// Streams open on this session (either side).
  std::size_t open_streams() const noexcept { return open_; }
  /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive).
  std::uint32_t peer_max_concurrent_streams() const noexcept;
  /// Client: room for one more stream on this connection.
  bool can_open_stream() const noexcept;

  // nghttp2 callbacks (public for the C trampolines only).
  struct callbacks;

 private:
  struct outbound {
    std::string buf;
    std::size_t off = 0;
    bool eof = false;
    bool deferred = false;
    bool has_trailers = false;
    header_list trailers;
  };
  void terminate(std::uint32_t code);
  bool take_reset_token();

  role role_;
  session_handler& handler_;
  nghttp2_session* s_ = nullptr;
  std::unordered_map<std::int32_t, outbound> out_;
  header_list block_;           // the header block being received (blocks never interleave)
  std::size_t block_bytes_ = 0;
  std::uint32_t max_header_list_;
  std::size_t open_ = 0;
  bool failed_ = false;
  bool terminated_ = false;
  double reset_burst_, reset_rate_, reset_tokens_;
  std::chrono::steady_clock::time_point reset_refill_;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
};

}  // namespace sluice::h2
