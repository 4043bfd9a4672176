// sluice-demo-backend: a small, fast HTTP/1.1 upstream whose routes exercise a reverse proxy.
//
//   sluice-demo-backend --listen 127.0.0.1:0 --id NAME [--threads N]
//
// Prints `listening HOST:PORT` once on stdout, then serves until SIGTERM/SIGINT (exit 0).
// Every connection is one coroutine; request heads are parsed by a Beast basic_parser that
// records only what the routes need (no per-field allocation), responses are written by hand
// into a per-connection buffer with one write per response. Bodies stream through bounded
// buffers, so /echo and /bytes work for bodies of any size.
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "sluice/core/address.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t io_chunk = 64 * 1024;      // read size and largest body piece written
constexpr std::uint32_t header_limit = 64 * 1024;
constexpr std::uint64_t max_delay_ms = 3600 * 1000;

// ---------------------------------------------------------------------------------------------
// Process-wide state (shared by all threads).

struct server_state {
  std::string id;
  std::atomic<std::uint64_t> served{0};
  std::atomic<int> health{200};
  std::string hello_body;      // "hello from NAME\n"
  std::string hello_response;  // full keep-alive HTTP/1.1 response to GET /
};
server_state g_state;

// byte i of every generated body is 'a' + i % 26; a piece starting at offset i is
// pattern.data() + i % 26, so one static buffer serves every offset.
std::array<char, io_chunk + 26> g_pattern;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool icontains_token(std::string_view list, std::string_view token) {
  // Comma-separated header value containing `token` (case-insensitive).
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

template <class Int>
std::optional<Int> parse_uint(std::string_view s) {
  Int v{};
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

std::string_view query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    auto eq = item.find('=');
    if (item.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

std::string_view reason(int status) {
  auto r = http::obsolete_reason(static_cast<http::status>(status));
  if (r.empty() || r.front() == '<') return "Unknown";
  return {r.data(), r.size()};
}

std::string websocket_accept(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in(key);
  in += guid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(b64), static_cast<std::size_t>(n));
}

// ---------------------------------------------------------------------------------------------
// Request head, as recorded by the parser. Owned by the connection and reused, so steady-state
// requests allocate nothing.

struct request_info {
  http::verb method = http::verb::unknown;
  std::string method_text;
  std::string target;
  int version = 11;
  std::string header_lines;  // "Name: value\n" for every field, in order (for /headers)
  std::string content_type;
  std::string ws_key;
  bool expect_continue = false;
  bool upgrade_websocket = false;
  std::string* body_sink = nullptr;  // body bytes are appended here; discarded when null

  void clear() {
    method = http::verb::unknown;
    method_text.clear();
    target.clear();
    version = 11;
    header_lines.clear();
    content_type.clear();
    ws_key.clear();
    expect_continue = false;
    upgrade_websocket = false;
    body_sink = nullptr;
  }
};

class request_parser final : public http::basic_parser<true> {
 public:
  explicit request_parser(request_info& info) : info_(info) {}

 private:
  void on_request_impl(http::verb method, beast::string_view method_str,
                       beast::string_view target, int version, error_code&) override {
    info_.method = method;
    info_.method_text.assign(method_str.data(), method_str.size());
    info_.target.assign(target.data(), target.size());
    info_.version = version;
  }
  void on_response_impl(int, beast::string_view, int, error_code& ec) override {
    ec = http::error::bad_version;  // never called for a request parser
  }
  void on_field_impl(http::field name, beast::string_view name_text, beast::string_view value,
                     error_code&) override {
    std::string_view v(value.data(), value.size());
    info_.header_lines.append(name_text.data(), name_text.size());
    info_.header_lines += ": ";
    info_.header_lines += v;
    info_.header_lines += '\n';
    switch (name) {
      case http::field::expect:
        if (iequals(v, "100-continue")) info_.expect_continue = true;
        break;
      case http::field::upgrade:
        if (icontains_token(v, "websocket")) info_.upgrade_websocket = true;
        break;
      case http::field::sec_websocket_key:
        info_.ws_key.assign(v);
        break;
      case http::field::content_type:
        info_.content_type.assign(v);
        break;
      default:
        break;
    }
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, error_code&) override {
    if (info_.body_sink) info_.body_sink->append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 error_code&) override {
    if (info_.body_sink) info_.body_sink->append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  request_info& info_;
};

// ---------------------------------------------------------------------------------------------
// One connection.

enum class framing { length, chunked, until_close };

class session {
 public:
  explicit session(tcp::socket socket)
      : socket_(std::move(socket)), timer_(socket_.get_executor()) {}

  asio::awaitable<void> run();

 private:
  asio::awaitable<error_code> fill();
  asio::awaitable<error_code> write_out();
  /// Feeds the rest of the request body through the parser (to info_.body_sink when set).
  /// When `echo` is set, streams what arrives back as the response body.
  asio::awaitable<error_code> finish_body(request_parser& parser, struct echo_state* echo);
  asio::awaitable<error_code> flush_echo(echo_state& echo, bool last);
  asio::awaitable<bool> serve_echo(request_parser& parser, bool keep_alive);
  asio::awaitable<bool> serve_bytes(std::uint64_t n, bool chunked, bool head, bool keep_alive);
  asio::awaitable<void> serve_websocket();
  asio::awaitable<void> fail(int status, std::string_view text);
  void reset_connection();
  void close_gracefully();

  void begin(int status);
  void end_head(bool keep_alive);
  void simple(int status, std::string_view content_type, std::string_view body, bool head,
              bool keep_alive, std::string_view extra_headers = {});

  tcp::socket socket_;
  asio::steady_timer timer_;
  beast::flat_buffer in_;
  std::string out_;
  std::string body_;
  request_info req_;
};

struct echo_state {
  framing frame = framing::length;
  bool head_sent = false;
  bool keep_alive = true;
};

asio::awaitable<error_code> session::fill() {
  auto space = in_.prepare(io_chunk);
  auto [ec, n] = co_await socket_.async_read_some(space, use_tuple);
  in_.commit(n);
  co_return ec;
}

asio::awaitable<error_code> session::write_out() {
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(out_), use_tuple);
  out_.clear();
  co_return ec;
}

void session::begin(int status) {
  out_ += "HTTP/1.1 ";
  append_uint(out_, static_cast<std::uint64_t>(status));
  out_ += ' ';
  out_ += reason(status);
  out_ += "\r\nX-Backend: ";
  out_ += g_state.id;
  out_ += "\r\n";
}

void session::end_head(bool keep_alive) {
  if (!keep_alive)
    out_ += "Connection: close\r\n";
  else if (req_.version == 10)
    out_ += "Connection: keep-alive\r\n";
  out_ += "\r\n";
}

void session::simple(int status, std::string_view content_type, std::string_view body,
                     bool head, bool keep_alive, std::string_view extra_headers) {
  begin(status);
  out_ += extra_headers;
  const bool bodyless = status == 204 || status == 304;
  if (!bodyless) {
    out_ += "Content-Type: ";
    out_ += content_type;
    out_ += "\r\nContent-Length: ";
    append_uint(out_, body.size());
    out_ += "\r\n";
  }
  end_head(keep_alive);
  if (!head && !bodyless) out_ += body;
}

void session::reset_connection() {
  error_code ec;
  socket_.set_option(asio::socket_base::linger(true, 0), ec);
  socket_.close(ec);
}

void session::close_gracefully() {
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  socket_.close(ec);
}

asio::awaitable<void> session::fail(int status, std::string_view text) {
  out_.clear();
  req_.version = 11;
  simple(status, "text/plain", text, false, false);
  co_await write_out();
  close_gracefully();
}

asio::awaitable<error_code> session::flush_echo(echo_state& echo, bool last) {
  std::array<asio::const_buffer, 4> bufs;
  std::size_t count = 0;
  char chunk_head[24];
  if (!echo.head_sent) {
    bufs[count++] = asio::buffer(out_);
    echo.head_sent = true;
  }
  if (!body_.empty()) {
    if (echo.frame == framing::chunked) {
      int len = std::snprintf(chunk_head, sizeof chunk_head, "%zx\r\n", body_.size());
      bufs[count++] = asio::buffer(chunk_head, static_cast<std::size_t>(len));
      bufs[count++] = asio::buffer(body_);
      bufs[count++] = asio::buffer(last ? std::string_view("\r\n0\r\n\r\n")
                                        : std::string_view("\r\n"));
    } else {
      bufs[count++] = asio::buffer(body_);
    }
  } else if (last && echo.frame == framing::chunked) {
    bufs[count++] = asio::buffer(std::string_view("0\r\n\r\n"));
  }
  if (count == 0) co_return error_code{};
  auto [ec, n] = co_await asio::async_write(
      socket_, std::span<const asio::const_buffer>(bufs.data(), count), use_tuple);
  out_.clear();
  body_.clear();
  co_return ec;
}

asio::awaitable<error_code> session::finish_body(request_parser& parser, echo_state* echo) {
  parser.eager(true);
  error_code ec;
  while (!parser.is_done()) {
    bool need_read = in_.size() == 0;
    if (!need_read) {
      auto used = parser.put(in_.data(), ec);
      in_.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        need_read = true;
      } else if (ec) {
        co_return ec;
      } else if (used == 0 && !parser.is_done()) {
        need_read = true;
      }
    }
    if (echo && !body_.empty() && (need_read || body_.size() >= io_chunk) && !parser.is_done()) {
      if (auto wec = co_await flush_echo(*echo, false)) co_return wec;
    }
    if (need_read && !parser.is_done()) {
      ec = co_await fill();
      if (ec == asio::error::eof) {
        parser.put_eof(ec);
        if (!ec && !parser.is_done()) ec = http::error::partial_message;
        if (ec) co_return ec;
      } else if (ec) {
        co_return ec;
      }
    }
  }
  co_return error_code{};
}

asio::awaitable<bool> session::serve_echo(request_parser& parser, bool keep_alive) {
  echo_state echo;
  const auto length = parser.content_length();
  if (length) {
    echo.frame = framing::length;
  } else if (parser.chunked()) {
    echo.frame = req_.version == 10 ? framing::until_close : framing::chunked;
    if (echo.frame == framing::until_close) keep_alive = false;
  } else {
    echo.frame = framing::length;  // no body at all
  }
  echo.keep_alive = keep_alive;

  if (req_.expect_continue && req_.version >= 11 && !parser.is_done()) {
    out_ += "HTTP/1.1 100 Continue\r\n\r\n";
    if (co_await write_out()) co_return false;
  }
  begin(200);
  out_ += "Content-Type: ";
  out_ += req_.content_type.empty() ? std::string_view("application/octet-stream")
                                    : std::string_view(req_.content_type);
  out_ += "\r\n";
  if (echo.frame == framing::length) {
    out_ += "Content-Length: ";
    append_uint(out_, length.value_or(0));
    out_ += "\r\n";
  } else if (echo.frame == framing::chunked) {
    out_ += "Transfer-Encoding: chunked\r\n";
  }
  end_head(keep_alive);

  req_.body_sink = &body_;
  auto ec = co_await finish_body(parser, &echo);
  req_.body_sink = nullptr;
  if (ec) {
    // Mid-body failure: the response may be half sent; the connection cannot be reused.
    if (!echo.head_sent && ec != asio::error::eof && ec != asio::error::connection_reset)
      co_await fail(400, "bad request body\n");
    else
      reset_connection();
    co_return false;
  }
  if (co_await flush_echo(echo, true)) co_return false;
  co_return keep_alive;
}

asio::awaitable<bool> session::serve_bytes(std::uint64_t n, bool chunked, bool head,
                                           bool keep_alive) {
  framing frame = framing::length;
  if (chunked) frame = req_.version == 10 ? framing::until_close : framing::chunked;
  if (frame == framing::until_close) keep_alive = false;
  begin(200);
  out_ += "Content-Type: application/octet-stream\r\n";
  if (frame == framing::length) {
    out_ += "Content-Length: ";
    append_uint(out_, n);
    out_ += "\r\n";
  } else if (frame == framing::chunked) {
    out_ += "Transfer-Encoding: chunked\r\n";
  }
  end_head(keep_alive);
  if (head) {
    if (co_await write_out()) co_return false;
    co_return keep_alive;
  }
  std::uint64_t offset = 0;
  bool first = true;
  char chunk_head[24];
  for (;;) {
    std::array<asio::const_buffer, 5> bufs;
    std::size_t count = 0;
    if (first) bufs[count++] = asio::buffer(out_);
    const std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(io_chunk, n - offset));
    if (piece > 0) {
      const char* data = g_pattern.data() + offset % 26;
      if (frame == framing::chunked) {
        int len = std::snprintf(chunk_head, sizeof chunk_head, "%zx\r\n", piece);
        bufs[count++] = asio::buffer(chunk_head, static_cast<std::size_t>(len));
        bufs[count++] = asio::buffer(data, piece);
        bufs[count++] = asio::buffer(std::string_view("\r\n"));
      } else {
        bufs[count++] = asio::buffer(data, piece);
      }
    }
    offset += piece;
    if (offset >= n && frame == framing::chunked)
      bufs[count++] = asio::buffer(std::string_view("0\r\n\r\n"));
    first = false;
    auto [ec, written] = co_await asio::async_write(
        socket_, std::span<const asio::const_buffer>(bufs.data(), count), use_tuple);
    if (ec) co_return false;
    if (offset >= n) break;
  }
  out_.clear();
  co_return keep_alive;
}

asio::awaitable<void> session::serve_websocket() {
  begin(101);
  out_ += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  out_ += websocket_accept(req_.ws_key);
  out_ += "\r\n\r\n";
  if (co_await write_out()) co_return;
  // Raw echo (no frame parsing) until the peer closes.
  for (;;) {
    if (in_.size() > 0) {
      auto [ec, n] = co_await asio::async_write(socket_, in_.data(), use_tuple);
      if (ec) co_return;
      in_.consume(n);
    }
    auto ec = co_await fill();
    if (ec) break;
  }
  close_gracefully();
}

asio::awaitable<void> session::run() {
  error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  out_.reserve(1024);
  for (;;) {
    req_.clear();
    request_parser parser(req_);
    parser.header_limit(header_limit);
    parser.body_limit(boost::none);
    parser.eager(false);

    // Request head.
    for (;;) {
      if (in_.size() > 0) {
        auto used = parser.put(in_.data(), ec);
        in_.consume(used);
        if (!ec && parser.is_header_done()) break;
        if (ec && ec != http::error::need_more) {
          co_await fail(ec == http::error::header_limit ? 431 : 400,
                        ec == http::error::header_limit ? "request header too large\n"
                                                        : "bad request\n");
          co_return;
        }
        ec = {};
      }
      ec = co_await fill();
      if (ec) {
        if (ec == asio::error::eof && in_.size() > 0) co_await fail(400, "bad request\n");
        else close_gracefully();
        co_return;
      }
    }

    g_state.served.fetch_add(1, std::memory_order_relaxed);
    bool keep_alive = parser.keep_alive();
    const bool head = req_.method == http::verb::head;
    std::string_view target = req_.target;
    const auto qmark = target.find('?');
    const std::string_view path = target.substr(0, qmark);
    const std::string_view query =
        qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);

    if (path == "/echo" &&
        (req_.method == http::verb::post || req_.method == http::verb::put)) {
      if (!co_await serve_echo(parser, keep_alive)) co_return;
      continue;
    }
    if (path == "/reset") {
      reset_connection();
      co_return;
    }
    if (path == "/ws" && req_.method == http::verb::get && req_.upgrade_websocket &&
        !req_.ws_key.empty() && parser.is_done()) {
      co_await serve_websocket();
      co_return;
    }

    // Every other route reads (and drops) the request body first.
    if (!parser.is_done()) {
      if (req_.expect_continue && req_.version >= 11) {
        out_ += "HTTP/1.1 100 Continue\r\n\r\n";
        if (co_await write_out()) co_return;
      }
      if (auto bec = co_await finish_body(parser, nullptr)) {
        if (bec != asio::error::eof && bec != asio::error::connection_reset)
          co_await fail(400, "bad request body\n");
        co_return;
      }
    }

    if (path == "/" && keep_alive && !head && req_.version == 11 &&
        req_.method == http::verb::get) {
      out_ = g_state.hello_response;  // the hot path of every benchmark
    } else if (path == "/healthz") {
      const int status = g_state.health.load(std::memory_order_relaxed);
      simple(status, "text/plain", status == 200 ? "ok\n" : "unhealthy\n", head, keep_alive);
    } else if (path.starts_with("/status/")) {
      auto code = parse_uint<int>(path.substr(8));
      if (!code || *code < 200 || *code > 599) {
        simple(400, "text/plain", "status must be 200-599\n", head, keep_alive);
      } else {
        std::string body = "status ";
        append_uint(body, static_cast<std::uint64_t>(*code));
        body += '\n';
        simple(*code, "text/plain", body, head, keep_alive);
      }
    } else if (path.starts_with("/delay/")) {
      auto ms = parse_uint<std::uint64_t>(path.substr(7));
      if (!ms || *ms > max_delay_ms) {
        simple(400, "text/plain", "delay must be 0-3600000 ms\n", head, keep_alive);
      } else {
        timer_.expires_after(std::chrono::milliseconds(*ms));
        co_await timer_.async_wait(use_tuple);
        simple(200, "text/plain", g_state.hello_body, head, keep_alive);
      }
    } else if (path.starts_with("/bytes/")) {
      auto n = parse_uint<std::uint64_t>(path.substr(7));
      if (!n) {
        simple(400, "text/plain", "bad byte count\n", head, keep_alive);
      } else {
        auto c = query_param(query, "chunked");
        const bool chunked = c == "1" || c == "true";
        if (!co_await serve_bytes(*n, chunked, head, keep_alive)) {
          close_gracefully();
          co_return;
        }
        continue;
      }
    } else if (path == "/headers") {
      body_ = req_.method_text;
      body_ += ' ';
      body_ += req_.target;
      body_ += req_.version == 10 ? " HTTP/1.0\n" : " HTTP/1.1\n";
      body_ += req_.header_lines;
      simple(200, "text/plain", body_, head, keep_alive);
      body_.clear();
    } else if (path == "/cookies") {
      simple(200, "text/plain", "cookies\n", head, keep_alive,
             "Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\n");
    } else if (path == "/close") {
      keep_alive = false;
      simple(200, "text/plain", g_state.hello_body, head, false);
    } else if (path == "/count") {
      std::string body;
      append_uint(body, g_state.served.load(std::memory_order_relaxed));
      simple(200, "text/plain", body, head, keep_alive);
    } else if (path == "/admin/health") {
      if (req_.method != http::verb::post && req_.method != http::verb::put) {
        simple(405, "text/plain", "use POST\n", head, keep_alive, "Allow: POST, PUT\r\n");
      } else {
        auto code = parse_uint<int>(query_param(query, "status"));
        if (!code || *code < 200 || *code > 599) {
          simple(400, "text/plain", "status must be 200-599\n", head, keep_alive);
        } else {
          g_state.health.store(*code, std::memory_order_relaxed);
          std::string body = "health ";
          append_uint(body, static_cast<std::uint64_t>(*code));
          body += '\n';
          simple(200, "text/plain", body, head, keep_alive);
        }
      }
    } else if (path == "/ws") {
      simple(426, "text/plain", "websocket upgrade required\n", head, keep_alive,
             "Upgrade: websocket\r\n");
    } else {
      simple(200, "text/plain", g_state.hello_body, head, keep_alive);
    }

    if (co_await write_out()) co_return;
    if (!keep_alive) {
      close_gracefully();
      co_return;
    }
  }
}

asio::awaitable<void> serve(tcp::socket socket) {
  try {
    session s(std::move(socket));
    co_await s.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-demo-backend: connection error: %s\n", e.what());
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer backoff(executor);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // Out of descriptors or similar: wait a little instead of spinning.
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    asio::co_spawn(executor, serve(std::move(socket)), asio::detached);
  }
}

void usage() {
  std::fprintf(stderr,
               "usage: sluice-demo-backend --listen HOST:PORT --id NAME [--threads N]\n"
               "  HOST:PORT  address to listen on (port 0: the kernel picks one)\n"
               "  NAME       backend name, sent in X-Backend and the default body\n"
               "  N          I/O threads, each with its own SO_REUSEPORT acceptor (default 1)\n"
               "\n"
               "Routes (every response carries X-Backend: NAME; HEAD works for every GET route):\n"
               "  GET  /  and unknown paths   200 \"hello from NAME\\n\"\n"
               "  GET  /healthz               200 \"ok\\n\" or the status set by /admin/health\n"
               "  POST /admin/health?status=N set the /healthz status (200-599)\n"
               "  GET  /status/NNN            status NNN (200-599), small body (none for 204/304)\n"
               "  GET  /delay/MS              200 after MS milliseconds\n"
               "  POST|PUT /echo              streams the request body back (100-continue, chunked)\n"
               "  GET  /bytes/N[?chunked=1]   N bytes, byte i = 'a' + i %% 26\n"
               "  GET  /headers               the request line and headers as received\n"
               "  GET  /cookies               two Set-Cookie headers\n"
               "  GET  /close                 200 with Connection: close, then closes\n"
               "  GET  /reset                 closes with a TCP RST, no answer\n"
               "  GET  /count                 requests served so far by this process\n"
               "  GET  /ws (Upgrade: websocket) 101, then echoes raw bytes until EOF\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_text;
  std::string id;
  unsigned threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string_view(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    }
    std::optional<std::string_view> v;
    if (arg == "--listen" && (v = value())) {
      listen_text = *v;
    } else if (arg == "--id" && (v = value())) {
      id = *v;
    } else if (arg == "--threads" && (v = value())) {
      auto n = parse_uint<unsigned>(*v);
      if (!n || *n == 0 || *n > 256) {
        std::fprintf(stderr, "sluice-demo-backend: --threads must be 1-256, got '%.*s'\n",
                     static_cast<int>(v->size()), v->data());
        return 2;
      }
      threads = *n;
    } else {
      std::fprintf(stderr, "sluice-demo-backend: bad argument '%s'\n", argv[i]);
      usage();
      return 2;
    }
  }
  if (listen_text.empty() || id.empty()) {
    usage();
    return 2;
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      std::fprintf(stderr, "sluice-demo-backend: --id must be printable ASCII without spaces\n");
      return 2;
    }
  }
  std::string error;
  auto addr = sluice::core::resolve(listen_text, &error, true);
  if (!addr) {
    std::fprintf(stderr, "sluice-demo-backend: --listen: %s\n", error.c_str());
    return 2;
  }

  std::signal(SIGPIPE, SIG_IGN);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  g_state.id = id;
  g_state.hello_body = "hello from " + id + "\n";
  g_state.hello_response = "HTTP/1.1 200 OK\r\nX-Backend: " + id +
                           "\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(g_state.hello_body.size()) + "\r\n\r\n" +
                           g_state.hello_body;
  for (std::size_t i = 0; i < g_pattern.size(); ++i)
    g_pattern[i] = static_cast<char>('a' + i % 26);

  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  tcp::endpoint endpoint(asio::ip::make_address(addr->host()), addr->port());
  try {
    for (unsigned t = 0; t < threads; ++t) {
      ios.push_back(std::make_unique<asio::io_context>(1));
      auto acceptor = std::make_unique<tcp::acceptor>(*ios.back());
      acceptor->open(endpoint.protocol());
      acceptor->set_option(asio::socket_base::reuse_address(true));
      if (threads > 1) {
        int one = 1;
        if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one,
                         sizeof one) != 0)
          throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
      }
      acceptor->bind(endpoint);
      acceptor->listen(4096);
      endpoint = acceptor->local_endpoint();  // the port the kernel picked, for the others
      acceptors.push_back(std::move(acceptor));
    }
  } catch (const boost::system::system_error& e) {
    std::fprintf(stderr, "sluice-demo-backend: cannot listen on %s: %s\n", listen_text.c_str(),
                 e.code().message().c_str());
    return 1;
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "sluice-demo-backend: cannot listen on %s: %s\n", listen_text.c_str(),
                 e.what());
    return 1;
  }

  const auto bound = endpoint.address().is_v6()
                         ? "[" + endpoint.address().to_string() + "]"
                         : endpoint.address().to_string();
  std::printf("listening %s:%u\n", bound.c_str(), static_cast<unsigned>(endpoint.port()));
  std::fflush(stdout);

  for (unsigned t = 0; t < threads; ++t)
    asio::co_spawn(*ios[t], accept_loop(*acceptors[t]), asio::detached);

  asio::signal_set signals(*ios[0], SIGINT, SIGTERM);
  signals.async_wait([&](const error_code& ec, int) {
    if (ec) return;
    for (auto& io : ios) io->stop();
  });

  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) workers.emplace_back([&, t] { ios[t]->run(); });
  ios[0]->run();
  for (auto& io : ios) io->stop();
  for (auto& w : workers) w.join();
  return 0;
}
