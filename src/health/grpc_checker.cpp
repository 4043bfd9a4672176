#include "health/checker.hpp"

#include <cstring>
#include <optional>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "h2/client_tls.hpp"
#include "sluice/h2/session.hpp"

namespace sluice::health {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_response_bytes = 64 * 1024;

tcp::endpoint to_endpoint(const core::address& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  return ep;
}

check_result failure(core::check_code code, std::string detail, std::uint16_t status = 0) {
  return {code, status, std::move(detail)};
}

check_result io_failure(const boost::system::error_code& ec, core::check_code otherwise,
                        std::string_view phase) {
  if (ec == beast::error::timeout) return failure(core::check_code::timeout, std::string(phase) + ": timed out");
  return failure(otherwise, std::string(phase) + ": " + ec.message());
}

// HealthCheckRequest{service} in a gRPC message frame (uncompressed, 4-byte big-endian length).
std::string request_frame(std::string_view service) {
  std::string msg;
  if (!service.empty()) {
    msg.push_back(0x0a);  // field 1, length-delimited
    for (std::size_t n = service.size();; n >>= 7) {
      if (n < 0x80) {
        msg.push_back(static_cast<char>(n));
        break;
      }
      msg.push_back(static_cast<char>((n & 0x7f) | 0x80));
    }
    msg.append(service);
  }
  std::string frame(5, '\0');
  const auto len = static_cast<std::uint32_t>(msg.size());
  frame[1] = static_cast<char>(len >> 24);
  frame[2] = static_cast<char>(len >> 16);
  frame[3] = static_cast<char>(len >> 8);
  frame[4] = static_cast<char>(len);
  return frame + msg;
}

bool read_varint(std::string_view& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// HealthCheckResponse.status (field 1, varint) from a protobuf message; 0 (UNKNOWN) when
// absent, nullopt when the message does not parse.
std::optional<std::uint64_t> response_status(std::string_view msg) {
  std::uint64_t status = 0;
  while (!msg.empty()) {
    std::uint64_t key = 0;
    if (!read_varint(msg, key)) return std::nullopt;
    const auto wire = key & 7;
    std::uint64_t v = 0;
    switch (wire) {
      case 0:
        if (!read_varint(msg, v)) return std::nullopt;
        if ((key >> 3) == 1) status = v;
        break;
      case 1:
        if (msg.size() < 8) return std::nullopt;
        msg.remove_prefix(8);
        break;
      case 2:
        if (!read_varint(msg, v) || v > msg.size()) return std::nullopt;
        msg.remove_prefix(static_cast<std::size_t>(v));
        break;
      case 5:
        if (msg.size() < 4) return std::nullopt;
        msg.remove_prefix(4);
        break;
      default: return std::nullopt;
    }
  }
  return status;
}

// Collects the one stream's response.
class exchange final : public h2::session_handler {
 public:
  void on_headers(std::int32_t, h2::header_list& headers, bool trailers, bool) override {
    if (!trailers && !got_headers_) {
      got_headers_ = true;
      auto st = h2::find_header(headers, ":status");
      status_ = 0;
      for (char c : st) {
        if (c < '0' || c > '9' || status_ > 999) {
          status_ = 0;
          break;
        }
        status_ = static_cast<std::uint16_t>(status_ * 10 + (c - '0'));
      }
    }
    // A trailers-only response carries grpc-status in its headers.
    if (auto g = h2::find_header(headers, "grpc-status"); !g.empty()) grpc_status_ = std::string(g);
  }
  void on_data(std::int32_t, std::span<const std::uint8_t> data) override {
    if (body_.size() + data.size() > max_response_bytes) {
      too_large_ = true;
      return;
    }
    body_.append(reinterpret_cast<const char*>(data.data()), data.size());
  }
  void on_stream_close(std::int32_t, std::uint32_t error_code) override {
    closed_ = true;
    reset_code_ = error_code;
  }

  check_result verdict() const {
    if (reset_code_ != 0)
      return failure(core::check_code::protocol_error,
                     "stream reset (h2 error " + std::to_string(reset_code_) + ")", status_);
    if (status_ != 200) return failure(core::check_code::bad_status, "status " + std::to_string(status_), status_);
    if (too_large_) return failure(core::check_code::protocol_error, "response larger than 64 KiB", status_);
    if (grpc_status_.empty()) return failure(core::check_code::protocol_error, "no grpc-status", status_);
    if (grpc_status_ != "0") return failure(core::check_code::grpc_status, "grpc_status_" + grpc_status_, status_);
    // One uncompressed message: flag 0, length, protobuf.
    std::string_view b = body_;
    if (b.size() < 5 || b[0] != 0)
      return failure(core::check_code::bad_body, "bad grpc message", status_);
    const std::uint32_t len = (std::uint32_t(static_cast<unsigned char>(b[1])) << 24) |
                              (std::uint32_t(static_cast<unsigned char>(b[2])) << 16) |
                              (std::uint32_t(static_cast<unsigned char>(b[3])) << 8) |
                              std::uint32_t(static_cast<unsigned char>(b[4]));
    if (b.size() - 5 != len) return failure(core::check_code::bad_body, "bad grpc message", status_);
    auto st = response_status(b.substr(5));
    if (!st) return failure(core::check_code::bad_body, "bad HealthCheckResponse", status_);
    switch (*st) {
      case 1: return check_result{core::check_code::ok, status_, {}};
      case 0: return failure(core::check_code::not_serving, "unknown", status_);
      case 2: return failure(core::check_code::not_serving, "not_serving", status_);
      case 3: return failure(core::check_code::not_serving, "service_unknown", status_);
      default: return failure(core::check_code::not_serving, "serving_status_" + std::to_string(*st), status_);
    }
  }

  bool closed() const noexcept { return closed_; }

 private:
  bool got_headers_ = false;
  bool closed_ = false;
  bool too_large_ = false;
  std::uint32_t reset_code_ = 0;
  std::uint16_t status_ = 0;
  std::string grpc_status_;
  std::string body_;
};

class grpc_checker final : public checker {
 public:
  grpc_checker(const config::health_check& cfg, const config::cluster* tls_cluster)
      : frame_(request_frame(cfg.service)) {
    if (tls_cluster) tls_cluster_ = *tls_cluster;
  }

  asio::awaitable<check_result> probe(const core::backend& b,
                                      std::chrono::milliseconds timeout) override {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    // One deadline for the whole exchange (see the http checker).
    stream.expires_after(timeout);
    if (auto [ec] = co_await stream.async_connect(to_endpoint(b.addr()), use_tuple); ec)
      co_return io_failure(ec, core::check_code::connect_failed, "connect");
    // protocol h2: TLS with the cluster's settings, as its traffic (the deadline above holds).
    std::shared_ptr<asio::ssl::context> ctx;
    std::optional<asio::ssl::stream<beast::tcp_stream&>> tls;
    if (tls_cluster_) {
      std::string key, why;
      ctx = h2::client_tls_context(*tls_cluster_, key);
      if (!ctx) co_return failure(core::check_code::connect_failed, "no TLS context (logged)");
      tls.emplace(stream, *ctx);
      if (!co_await h2::client_tls_handshake(*tls, h2::client_tls_peer_of(*tls_cluster_, b),
                                             b.name(), &why))
        co_return failure(core::check_code::connect_failed, why);
    }

    exchange ex;
    h2::settings st;
    st.initial_window_size = max_response_bytes * 2;
    h2::session s(h2::role::client, ex, st);
    const h2::header_list headers{{":method", "POST"},
                                  {":scheme", tls ? "https" : "http"},
                                  {":path", "/grpc.health.v1.Health/Check"},
                                  {":authority", b.name()},
                                  {"content-type", "application/grpc"},
                                  {"te", "trailers"},
                                  {"user-agent", "sluice-health/" SLUICE_VERSION}};
    const auto id = s.submit_request(headers, false);
    if (id < 0 || !s.send_data(id, frame_) || !s.end_stream(id))
      co_return failure(core::check_code::protocol_error, "cannot open the h2 stream");

    std::string out;
    char in[16 * 1024];
    while (true) {
      out.clear();
      while (s.send(out) > 0) {
      }
      if (s.failed()) co_return failure(core::check_code::protocol_error, "h2 session failed");
      if (!out.empty()) {
        auto [ec, n] = tls ? co_await asio::async_write(*tls, asio::buffer(out), use_tuple)
                           : co_await asio::async_write(stream, asio::buffer(out), use_tuple);
        if (ec) {
          if (ex.closed()) break;
          co_return io_failure(ec, core::check_code::protocol_error, "send");
        }
      }
      if (ex.closed()) break;
      auto [ec, n] = tls ? co_await tls->async_read_some(asio::buffer(in), use_tuple)
                         : co_await stream.async_read_some(asio::buffer(in), use_tuple);
      if (ec) co_return io_failure(ec, core::check_code::protocol_error, "response");
      if (!s.receive(std::string_view(in, n)) && !ex.closed())
        co_return failure(core::check_code::protocol_error, "h2 protocol error");
    }
    // Best effort: say goodbye before closing (the socket closes when `stream` goes).
    s.goaway(h2::error::no_error);
    out.clear();
    s.send(out);
    if (!out.empty()) {
      stream.expires_after(std::chrono::milliseconds(100));
      if (tls)
        co_await asio::async_write(*tls, asio::buffer(out), use_tuple);
      else
        co_await asio::async_write(stream, asio::buffer(out), use_tuple);
    }
    co_return ex.verdict();
  }

 private:
  std::string frame_;
  std::optional<config::cluster> tls_cluster_;  // protocol h2: its tls settings
};

}  // namespace

std::unique_ptr<checker> make_grpc_checker(const config::health_check& cfg,
                                           const config::cluster* tls_cluster) {
  return std::make_unique<grpc_checker>(cfg, tls_cluster);
}

}  // namespace sluice::health
