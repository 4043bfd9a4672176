#include "discovery/etcd_client.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_protocol.hpp"

namespace sluice::discovery::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint64_t max_unary_body = 64u << 20;

error_code failure(boost::system::errc::errc_t e) { return boost::system::errc::make_error_code(e); }

// An I/O error on an established connection, with the likely cause of the two that puzzle.
std::string describe(const error_code& ec, bool tls) {
  std::string out = ec.message();
  if (tls && (out.find("alert bad certificate") != std::string::npos ||
              out.find("certificate required") != std::string::npos ||
              out.find("alert unknown ca") != std::string::npos))
    out += " (etcd refused the client certificate: it needs tls.cert/tls.key (--cert/--key) signed by"
           " a CA in etcd's --trusted-ca-file)";
  else if (!tls && (ec == http::error::end_of_stream || ec == http::error::partial_message ||
                    ec == asio::error::eof))
    out += " (etcd closed the connection without an answer; if it serves https, configure tls)";
  return out;
}

}  // namespace

std::shared_ptr<ssl::context> make_tls_context(const config::etcd_tls& tls, std::string* error) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  if (!tls.ca.empty()) {
    ctx->load_verify_file(tls.ca, ec);
    if (ec) {
      if (error) *error = "etcd tls.ca '" + tls.ca + "': " + ec.message();
      return nullptr;
    }
  } else {
    ctx->set_default_verify_paths(ec);
  }
  if (!tls.cert.empty()) {
    ctx->use_certificate_chain_file(tls.cert, ec);
    if (ec) {
      if (error) *error = "etcd tls.cert '" + tls.cert + "': " + ec.message();
      return nullptr;
    }
    ctx->use_private_key_file(tls.key, ssl::context::pem, ec);
    if (ec) {
      if (error) *error = "etcd tls.key '" + tls.key + "': " + ec.message();
      return nullptr;
    }
  }
  return ctx;
}

std::string explain_gateway_error(const std::string& reason, bool tls) {
  if (!tls || reason.find("error 14: connection closed") == std::string::npos) return reason;
  return reason +
         " (etcd's JSON gateway could not reach etcd's own gRPC server: with --client-cert-auth,"
         " etcd's server certificate must also allow client authentication, extendedKeyUsage"
         " clientAuth)";
}

struct connection::impl {
  impl(asio::any_io_executor e, std::shared_ptr<ssl::context> t) : ex(std::move(e)), tls_ctx(std::move(t)) {}

  asio::any_io_executor ex;
  std::shared_ptr<ssl::context> tls_ctx;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::buffer_body>> stream;
  std::string host_header;
  char chunk[16384];

  bool open() const noexcept { return tls ? beast::get_lowest_layer(*tls).socket().is_open() : plain && plain->socket().is_open(); }
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  http::request<http::string_body> make_request(std::string_view target, std::string body,
                                                const std::string& token) const {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, host_header);
    req.set(http::field::content_type, "application/json");
    if (!token.empty()) req.set(http::field::authorization, token);
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    return req;
  }

  template <class Stream>
  asio::awaitable<error_code> exchange(Stream& s, http::request<http::string_body>& req, http_reply& out) {
    auto [wec, wn] = co_await http::async_write(s, req, use_tuple);
    if (wec) co_return wec;
    http::response_parser<http::string_body> p;
    p.body_limit(max_unary_body);
    auto [rec, rn] = co_await http::async_read(s, buffer, p, use_tuple);
    if (rec) co_return rec;
    out.status = p.get().result_int();
    out.body = std::move(p.get().body());
    if (!p.get().keep_alive()) lowest().socket().close();
    co_return error_code{};
  }

  template <class Stream>
  asio::awaitable<error_code> start_stream(Stream& s, http::request<http::string_body>& req, unsigned& status) {
    auto [wec, wn] = co_await http::async_write(s, req, use_tuple);
    if (wec) co_return wec;
    stream.emplace();
    stream->body_limit(boost::none);
    auto [rec, rn] = co_await http::async_read_header(s, buffer, *stream, use_tuple);
    if (rec) co_return rec;
    status = stream->get().result_int();
    co_return error_code{};
  }

  template <class Stream>
  asio::awaitable<error_code> next_piece(Stream& s, std::string& out) {
    for (;;) {
      if (stream->is_done()) co_return http::error::end_of_stream;
      stream->get().body().data = chunk;
      stream->get().body().size = sizeof chunk;
      auto [ec, n] = co_await http::async_read_some(s, buffer, *stream, use_tuple);
      const std::size_t got = sizeof chunk - stream->get().body().size;
      out.append(chunk, got);
      if (ec && ec != http::error::need_buffer) co_return ec;
      if (got > 0) co_return error_code{};
    }
  }
};

connection::connection(asio::any_io_executor ex, std::shared_ptr<ssl::context> tls)
    : impl_(std::make_unique<impl>(std::move(ex), std::move(tls))) {}

connection::~connection() = default;

bool connection::is_open() const noexcept { return impl_->open(); }

void connection::close() noexcept {
  boost::system::error_code ec;
  if (impl_->tls) beast::get_lowest_layer(*impl_->tls).socket().close(ec);
  if (impl_->plain) impl_->plain->socket().close(ec);
}

asio::awaitable<error_code> connection::connect(std::string endpoint, milliseconds timeout) {
  auto& m = *impl_;
  close();
  m.plain.reset();
  m.tls.reset();
  m.stream.reset();
  m.buffer.clear();
  endpoint_ = std::move(endpoint);
  auto hp = core::split_host_port(endpoint_);
  if (!hp) {
    last_error_ = "bad etcd endpoint '" + endpoint_ + "'";
    co_return failure(boost::system::errc::invalid_argument);
  }
  m.host_header = endpoint_;
  tcp::resolver resolver(m.ex);
  auto [rec, results] = co_await resolver.async_resolve(hp->host, std::to_string(hp->port), use_tuple);
  if (rec) {
    last_error_ = "cannot resolve " + endpoint_ + ": " + rec.message();
    co_return rec;
  }
  beast::tcp_stream* lowest = nullptr;
  if (m.tls_ctx) {
    m.tls.emplace(m.ex, *m.tls_ctx);
    lowest = &beast::get_lowest_layer(*m.tls);
  } else {
    m.plain.emplace(m.ex);
    lowest = &*m.plain;
  }
  lowest->expires_after(timeout);
  auto [cec, ep] = co_await lowest->async_connect(results, use_tuple);
  if (cec) {
    last_error_ = "cannot connect to " + endpoint_ + ": " + cec.message();
    co_return cec;
  }
  // A watch stays silent while nothing changes: keep-alive probes find a peer that vanished
  // without a FIN (host down, cable pulled) in about 20 s instead of the kernel's 2 hours.
  const int fd = lowest->socket().native_handle();
  int on = 1, idle = 10, interval = 5, count = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  lowest->socket().set_option(tcp::no_delay(true));
  if (m.tls) {
    boost::system::error_code ip_ec;
    asio::ip::make_address(hp->host, ip_ec);
    if (ip_ec && !SSL_set_tlsext_host_name(m.tls->native_handle(), hp->host.c_str())) {
      last_error_ = "TLS: cannot set SNI for " + hp->host;
      co_return failure(boost::system::errc::invalid_argument);
    }
    m.tls->set_verify_callback(ssl::host_name_verification(hp->host));
    auto [hec] = co_await m.tls->async_handshake(ssl::stream_base::client, use_tuple);
    if (hec) {
      last_error_ = "TLS handshake with " + endpoint_ + " failed: " + hec.message();
      // "certificate verify failed" alone does not say what is wrong with the certificate.
      const long verify = SSL_get_verify_result(m.tls->native_handle());
      if (verify != X509_V_OK) {
        last_error_ += ": ";
        last_error_ += X509_verify_cert_error_string(verify);
        if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
          last_error_ += " (the certificate does not name " + hp->host + ")";
        else if (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                 verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                 verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
          last_error_ += " (etcd's certificate is not signed by the CA in tls.ca / --ca)";
      }
      co_return hec;
    }
  }
  lowest->expires_never();
  last_error_.clear();
  co_return error_code{};
}

asio::awaitable<error_code> connection::post(std::string_view target, std::string body,
                                             http_reply& out, milliseconds timeout) {
  auto& m = *impl_;
  if (!m.open()) {
    last_error_ = "not connected";
    co_return failure(boost::system::errc::not_connected);
  }
  auto req = m.make_request(target, std::move(body), token_);
  m.lowest().expires_after(timeout);
  error_code ec = m.tls ? co_await m.exchange(*m.tls, req, out) : co_await m.exchange(*m.plain, req, out);
  if (m.open()) m.lowest().expires_never();
  if (ec) last_error_ = std::string(target) + " on " + endpoint_ + ": " + describe(ec, m.tls.has_value());
  co_return ec;
}

asio::awaitable<error_code> connection::authenticate(const credentials& creds, milliseconds timeout) {
  token_.clear();
  http_reply r;
  auto ec = co_await post("/v3/auth/authenticate", authenticate_request(creds.username, creds.password),
                          r, timeout);
  if (ec) co_return ec;
  std::string err;
  auto token = parse_authenticate_response(r.body, &err);
  if (!token) {
    last_error_ = "authentication as '" + creds.username + "' on " + endpoint_ + " failed: " + err;
    co_return failure(boost::system::errc::permission_denied);
  }
  token_ = std::move(*token);
  co_return error_code{};
}

asio::awaitable<error_code> connection::call(std::string_view target, std::string body,
                                             const credentials& creds, http_reply& out,
                                             milliseconds timeout) {
  if (!creds.username.empty() && token_.empty()) {
    if (auto ec = co_await authenticate(creds, timeout)) co_return ec;
  }
  auto ec = co_await post(target, body, out, timeout);
  if (ec || creds.username.empty()) co_return ec;
  auto e = parse_error(out.body);
  if (!e || !e->is_auth()) co_return ec;
  // The token expired (etcd's simple tokens live 5 minutes without use) or was revoked.
  if (auto aec = co_await authenticate(creds, timeout)) co_return aec;
  co_return co_await post(target, std::move(body), out, timeout);
}

asio::awaitable<error_code> connection::open_stream(std::string_view target, std::string body,
                                                    unsigned& status, milliseconds timeout) {
  auto& m = *impl_;
  if (!m.open()) {
    last_error_ = "not connected";
    co_return failure(boost::system::errc::not_connected);
  }
  auto req = m.make_request(target, std::move(body), token_);
  m.lowest().expires_after(timeout);
  error_code ec = m.tls ? co_await m.start_stream(*m.tls, req, status)
                        : co_await m.start_stream(*m.plain, req, status);
  if (m.open()) m.lowest().expires_never();
  if (ec) last_error_ = std::string(target) + " on " + endpoint_ + ": " + describe(ec, m.tls.has_value());
  co_return ec;
}

asio::awaitable<error_code> connection::read_stream(std::string& out) {
  auto& m = *impl_;
  if (!m.stream || !m.open()) {
    last_error_ = "no stream open";
    co_return failure(boost::system::errc::not_connected);
  }
  error_code ec = m.tls ? co_await m.next_piece(*m.tls, out) : co_await m.next_piece(*m.plain, out);
  if (ec) last_error_ = "stream from " + endpoint_ + ": " + ec.message();
  co_return ec;
}

}  // namespace sluice::discovery::etcd
