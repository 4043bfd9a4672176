#include "h2_upstream.hpp"

#include <algorithm>
#include <cerrno>

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sluice/core/clock.hpp"

namespace sluice::http {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_size = 16 * 1024;
constexpr std::size_t write_batch = 64 * 1024;
}  // namespace

asio::awaitable<error_code> h2_upstream::flush() {
  for (;;) {
    out.clear();
    h2.send(out, write_batch);
    if (out.empty()) co_return error_code{};
    auto [ec, n] = tls ? co_await asio::async_write(*tls, asio::buffer(out), use_tuple)
                       : co_await asio::async_write(conn->socket, asio::buffer(out), use_tuple);
    if (ec) co_return ec;
  }
}

asio::awaitable<error_code> h2_upstream::read_more() {
  auto& buf = conn->buffer;
  auto [ec, n] = tls ? co_await tls->async_read_some(buf.prepare(read_size), use_tuple)
                     : co_await conn->socket.async_read_some(buf.prepare(read_size), use_tuple);
  if (ec) co_return ec;
  buf.commit(n);
  bool ok = h2.receive(std::span<const std::uint8_t>(
      static_cast<const std::uint8_t*>(buf.data().data()), buf.size()));
  buf.consume(buf.size());
  auto fec = co_await flush();
  if (!ok) {
    error_code ignored;
    conn->socket.close(ignored);
    co_return asio::error::make_error_code(asio::error::connection_aborted);
  }
  co_return fec;
}

bool h2_upstream::catch_up() {
  char buf[4096];
  if (tls) {
    // Through the TLS stream, without waiting: the socket is switched to non-blocking for the
    // synchronous read (asynchronous operations do not depend on that mode).
    error_code ec;
    conn->socket.non_blocking(true, ec);
    if (ec) return false;
    for (;;) {
      std::size_t n = tls->read_some(asio::buffer(buf), ec);
      if (ec) return ec == asio::error::would_block;
      if (!h2.receive(std::string_view(buf, n))) return false;
    }
  }
  for (;;) {
    ssize_t n = ::recv(conn->socket.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      if (!h2.receive(std::string_view(buf, static_cast<std::size_t>(n)))) return false;
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

void h2_upstream::on_headers(std::int32_t stream, h2::header_list& h, bool trailers, bool end) {
  if (stream != id) return;
  received = true;
  if (!trailers && !have_headers) {
    auto status = h2::find_header(h, ":status");
    if (!status.empty() && status[0] == '1') return;  // 1xx: the final answer follows
    headers = std::move(h);
    have_headers = true;
  }
  // Trailers are not relayed to an HTTP/1.1 client.
  if (end) ended = true;
}

void h2_upstream::on_data(std::int32_t stream, std::span<const std::uint8_t> bytes) {
  if (stream != id || closed) {
    h2.consume(stream, bytes.size());  // nobody wants it: keep the connection window open
    return;
  }
  received = true;
  data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void h2_upstream::on_end_stream(std::int32_t stream) {
  if (stream == id) ended = true;
}

void h2_upstream::on_stream_close(std::int32_t stream, std::uint32_t code) {
  if (stream != id) return;
  closed = true;
  close_code = code;
}

// ---- pool ------------------------------------------------------------------------------------

std::shared_ptr<h2_upstream> h2_upstream_pool::take(core::backend* b, std::string_view tls_key) {
  auto it = idle_.find(b);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  std::shared_ptr<h2_upstream> u;
  while (!list.empty() && !u) {
    u = std::move(list.back());
    list.pop_back();
    if (u->tls_key != tls_key || !u->usable() || !u->catch_up() || !u->usable()) {
      error_code ec;
      u->conn->socket.close(ec);
      u.reset();
    }
  }
  if (u) u->conn->keep.reset();
  return u;
}

void h2_upstream_pool::put(std::shared_ptr<h2_upstream> u, std::uint32_t max_idle,
                           std::chrono::milliseconds idle_timeout) {
  if (closed_ || max_idle == 0 || !u->usable()) return;  // closes on destruction
  auto& list = idle_[u->conn->backend];
  if (list.size() >= max_idle) {
    error_code ec;
    list.front()->conn->socket.close(ec);
    list.erase(list.begin());
  }
  u->conn->idle_since = core::coarse_now();
  u->conn->idle_timeout = idle_timeout;
  list.push_back(std::move(u));
}

void h2_upstream_pool::sweep(std::chrono::steady_clock::time_point now) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    list.erase(std::remove_if(list.begin(), list.end(),
                              [now](auto& u) {
                                if (now - u->conn->idle_since < u->conn->idle_timeout) return false;
                                error_code ec;
                                u->conn->socket.close(ec);
                                return true;
                              }),
               list.end());
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

void h2_upstream_pool::clear(bool close_pool) {
  if (close_pool) closed_ = true;
  for (auto& [b, list] : idle_)
    for (auto& u : list) {
      error_code ec;
      u->conn->socket.close(ec);
    }
  idle_.clear();
}

}  // namespace sluice::http
