#include "admin/server.hpp"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>

#include "admin/status_page.hpp"
#include "sluice/admin/status.hpp"
#include "sluice/core/address.hpp"
#include "sluice/log/log.hpp"

namespace sluice::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t max_connections = 64;
constexpr std::size_t header_limit = 16 * 1024;
constexpr std::size_t body_limit = 64 * 1024;
constexpr auto io_timeout = 30s;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

response make(unsigned status, std::string body, std::string_view type, const request& req) {
  response res{static_cast<http::status>(status), req.version()};
  res.set(http::field::server, "sluice/" SLUICE_VERSION);
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::move(body);
  return res;
}

response text(unsigned status, std::string body, const request& req) {
  return make(status, std::move(body), "text/plain; charset=utf-8", req);
}

response json_response(unsigned status, const boost::json::value& v, const request& req) {
  return make(status, boost::json::serialize(v) + "\n", "application/json", req);
}

response error_json(unsigned status, std::string_view message, const request& req) {
  boost::json::object o;
  o["error"] = message;
  return json_response(status, o, req);
}

// Percent-decoding of one path segment; nullopt on a malformed escape.
std::optional<std::string> decode_segment(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    const auto j = path.find('/', i);
    parts.push_back(path.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) break;
    i = j;
  }
  return parts;
}

// Constant-time comparison: the time taken does not tell how much of a guess was right.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

}  // namespace

struct server::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& io, server_options o)
      : io_(io), opts_(std::move(o)), acceptor_(io), started_(std::chrono::system_clock::now()) {
    if (opts_.cfg) ports_.assign(opts_.cfg->listeners.size(), 0);
  }

  asio::io_context& io_;
  server_options opts_;
  tcp::acceptor acceptor_;
  std::chrono::system_clock::time_point started_;
  std::atomic<bool> draining_{false};
  std::vector<std::uint16_t> ports_;
  std::unordered_set<beast::tcp_stream*> open_;  // control thread only
  bool stopped_ = false;

  const std::string& token() const { return opts_.cfg->admin.token; }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    asio::steady_timer backoff(io_);
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (stopped_ || !acceptor_.is_open()) co_return;
      if (ec) {
        // EMFILE and friends: wait a little instead of spinning on the error.
        SLUICE_LOG(warn, "admin: accept failed: " << ec.message());
        backoff.expires_after(100ms);
        co_await backoff.async_wait(use_tuple);
        continue;
      }
      if (open_.size() >= max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(socket));
    open_.insert(&stream);
    struct untrack {
      impl* i;
      beast::tcp_stream* s;
      ~untrack() { i->open_.erase(s); }
    } guard{this, &stream};
    beast::flat_buffer buffer(header_limit + body_limit);
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(header_limit);
      parser.body_limit(body_limit);
      stream.expires_after(io_timeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
      if (ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
            ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
            stopped_)
          break;
        // A malformed or oversized request: say so, then close.
        request dummy;
        dummy.version(11);
        auto res = text(ec == http::error::body_limit || ec == http::error::header_limit ? 413 : 400,
                        "bad request: " + ec.message() + "\n", dummy);
        res.keep_alive(false);
        res.prepare_payload();
        stream.expires_after(io_timeout);
        co_await http::async_write(stream, res, use_tuple);
        break;
      }
      request req = parser.release();
      response res = handle(req);
      const bool keep = req.keep_alive() && !stopped_;
      res.keep_alive(keep);
      res.prepare_payload();
      stream.expires_after(io_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !keep) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.socket().close(ignored);
  }

  response handle(const request& req) {
    std::string_view target = req.target();
    const auto q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const auto method = req.method();
    const bool get = method == http::verb::get;
    const bool post = method == http::verb::post;

    // Probes and the (data-free) page stay open; the page sends the token itself.
    const bool open_endpoint = path == "/" || path == "/ready" || path == "/live";
    if (!open_endpoint && !token().empty()) {
      const std::string_view auth = req[http::field::authorization];
      constexpr std::string_view scheme = "Bearer ";
      if (auth.size() <= scheme.size() ||
          !beast::iequals(auth.substr(0, scheme.size()), scheme) ||
          !same_secret(auth.substr(scheme.size()), token())) {
        auto res = error_json(401, "missing or wrong bearer token", req);
        res.set(http::field::www_authenticate, "Bearer realm=\"sluice admin\"");
        return res;
      }
    }
    if (post) {
      const std::string_view origin = req[http::field::origin];
      if (!origin.empty() && origin != "http://" + std::string(req[http::field::host]))
        return error_json(403, "cross-origin request refused", req);
    }

    if (path == "/") {
      if (!get) return not_allowed("GET", req);
      return make(200, std::string(status_page_html()), "text/html; charset=utf-8", req);
    }
    if (path == "/live") {
      if (!get) return not_allowed("GET", req);
      return text(200, "live\n", req);
    }
    if (path == "/ready") {
      if (!get) return not_allowed("GET", req);
      return draining_.load(std::memory_order_relaxed) ? text(503, "draining\n", req)
                                                       : text(200, "ready\n", req);
    }
    if (path == "/metrics") {
      if (!get) return not_allowed("GET", req);
      if (!opts_.metrics) return text(503, "metrics are not available\n", req);
      return make(200, opts_.metrics->serialize(), "text/plain; version=0.0.4; charset=utf-8", req);
    }
    if (path == "/status") {
      if (!get) return not_allowed("GET", req);
      return json_response(200, status_now(), req);
    }
    if (path == "/reload") {
      if (!post) return not_allowed("POST", req);
      if (!opts_.reload) return error_json(501, "configuration reload is not available", req);
      const auto r = opts_.reload();
      boost::json::object o;
      o["ok"] = r.ok;
      o["version"] = r.version;
      boost::json::array errors, changes;
      for (const auto& e : r.errors) errors.emplace_back(e);
      for (const auto& c : r.changes) changes.emplace_back(c);
      o["errors"] = std::move(errors);
      o["changes"] = std::move(changes);
      return json_response(r.ok ? 200 : 422, o, req);
    }
    const auto parts = split_path(path);
    if (parts.size() == 4 && parts[0] == "backends" &&
        (parts[3] == "drain" || parts[3] == "undrain")) {
      if (!post) return not_allowed("POST", req);
      const auto cluster = decode_segment(parts[1]);
      const auto address = decode_segment(parts[2]);
      if (!cluster || !address) return error_json(400, "malformed percent-encoding in path", req);
      return drain(*cluster, *address, parts[3] == "drain", req);
    }
    return error_json(404, "no such endpoint", req);
  }

  response not_allowed(const char* allow, const request& req) {
    auto res = error_json(405, "method not allowed", req);
    res.set(http::field::allow, allow);
    return res;
  }

  response drain(const std::string& cluster, const std::string& address, bool on,
                 const request& req) {
    for (const auto& c : opts_.clusters) {
      if (!c || c->name() != cluster) continue;
      if (!c->set_draining(address, on))
        return error_json(404, "cluster " + cluster + " has no backend " + address, req);
      SLUICE_LOG(info, "admin: backend " << address << " of cluster " << cluster
                                         << (on ? " drained" : " undrained"));
      boost::json::object o;
      o["cluster"] = cluster;
      o["backend"] = address;
      o["draining"] = on;
      return json_response(200, o, req);
    }
    return error_json(404, "no cluster named " + cluster, req);
  }

  boost::json::value status_now() const {
    status_inputs in;
    in.cfg = opts_.cfg;
    in.clusters = opts_.clusters;
    in.metrics = opts_.metrics.get();
    in.listener_ports = ports_;
    in.listener_slots = opts_.listener_slots;
    in.draining = draining_.load(std::memory_order_relaxed);
    in.started = started_;
    return status(in);
  }
};

server::server(asio::io_context& control, server_options opts)
    : impl_(std::make_shared<impl>(control, std::move(opts))) {}

server::~server() { stop(); }

void server::reconfigure(const config::config* cfg,
                         std::vector<std::shared_ptr<pool::cluster>> clusters,
                         std::vector<std::size_t> listener_slots) {
  impl_->opts_.cfg = cfg;
  impl_->opts_.clusters = std::move(clusters);
  impl_->opts_.listener_slots = std::move(listener_slots);
  impl_->ports_.assign(cfg ? cfg->listeners.size() : 0, 0);
}

std::uint16_t server::start() {
  if (!impl_->opts_.cfg) throw std::invalid_argument("admin: no configuration");
  const auto& text = impl_->opts_.cfg->admin.address;
  std::string err;
  auto addr = core::resolve(text, &err, /*allow_zero_port=*/true);
  if (!addr) throw std::invalid_argument("admin address " + text + ": " + err);
  tcp::endpoint ep;
  std::memcpy(ep.data(), &addr->storage, addr->length);
  ep.resize(addr->length);
  auto& a = impl_->acceptor_;
  boost::system::error_code ec;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    a.close(ignored);
    throw std::system_error(ec.value(), std::generic_category(), "admin listener " + text);
  }
  const auto port = a.local_endpoint().port();
  asio::co_spawn(impl_->io_, impl_->accept_loop(), asio::detached);
  return port;
}

std::uint16_t server::start_inherited(int fd) {
  auto& a = impl_->acceptor_;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  boost::system::error_code ec;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    ec.assign(errno, boost::system::system_category());
  else
    a.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    throw std::system_error(ec.value(), std::generic_category(), "admin listener (inherited)");
  }
  const auto port = a.local_endpoint().port();
  asio::co_spawn(impl_->io_, impl_->accept_loop(), asio::detached);
  return port;
}

int server::listening_fd() const noexcept {
  return impl_ && !impl_->stopped_ && impl_->acceptor_.is_open() ? impl_->acceptor_.native_handle()
                                                                 : -1;
}

void server::set_draining() noexcept { impl_->draining_.store(true, std::memory_order_relaxed); }

void server::set_listener_port(std::size_t listener, std::uint16_t port) {
  if (listener < impl_->ports_.size()) impl_->ports_[listener] = port;
}

void server::stop() {
  if (!impl_ || impl_->stopped_) return;
  impl_->stopped_ = true;
  boost::system::error_code ignored;
  // Out of epoll explicitly, then closed: after a binary upgrade the successor holds the same
  // listening socket, and a plain close would leave it registered here.
  const int fd = impl_->acceptor_.is_open() ? impl_->acceptor_.release(ignored) : -1;
  if (fd >= 0) ::close(fd);
  for (auto* s : impl_->open_) s->socket().close(ignored);
}

}  // namespace sluice::admin
