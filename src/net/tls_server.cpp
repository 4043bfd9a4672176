#include "net/tls_server.hpp"

#include <algorithm>
#include <cctype>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sluice/config/certificate.hpp"

namespace sluice::net {

namespace asio = boost::asio;

namespace {

// Mozilla's "intermediate" TLS 1.2 list: forward secrecy and AEAD only. TLS 1.3 suites are
// OpenSSL's defaults (all AEAD).
constexpr const char* default_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

std::string openssl_error(const char* what) {
  std::string out = what;
  unsigned long e = ERR_peek_last_error();
  if (e != 0) {
    const char* r = ERR_reason_error_string(e);
    out += ": ";
    out += r ? r : "error " + std::to_string(e);
  }
  ERR_clear_error();
  return out;
}

// Runs during the ClientHello, before the certificate is chosen: moves the connection to the
// context of the certificate serving the requested name. `arg` is the tls_server, alive for
// the whole handshake (the session holds its listener state).
int on_server_name(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const tls_server*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate
  const std::size_t i = self->select(name);
  if (i != 0) SSL_set_SSL_CTX(ssl, self->native_context(i));
  return SSL_TLSEXT_ERR_OK;
}

// Our preference order wins; no protocol in common: no ALPN (HTTP/1.1).
int on_alpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
            unsigned int in_len, void* arg) {
  const auto* self = static_cast<const tls_server*>(arg);
  const std::string& wire = self->alpn_wire();
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len,
                            reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned int>(wire.size()), in,
                            in_len) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;  // OpenSSL copies it before the callback's buffers go away
  return SSL_TLSEXT_ERR_OK;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::size_t tls_server::select(std::string_view server_name) const {
  if (by_name_.empty() || server_name.empty() || server_name.size() > 253) return 0;
  std::string name = lower(server_name);
  if (name.back() == '.') name.pop_back();
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  auto dot = name.find('.');
  if (dot == std::string::npos || dot == 0) return 0;
  name.replace(0, dot, "*");
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  return 0;
}

std::shared_ptr<const tls_server> make_tls_server(const config::listener& listener,
                                                  std::string* err) {
  auto fail = [&](std::string why) -> std::shared_ptr<const tls_server> {
    if (err) *err = "listener " + listener.name + ": tls: " + std::move(why);
    ERR_clear_error();
    return nullptr;
  };
  if (!listener.tls || listener.tls->certificates.empty())
    return fail("no certificate configured");
  const auto& t = *listener.tls;
  std::shared_ptr<tls_server> out(new tls_server());
  out->handshake_timeout_ = t.handshake_timeout;
  for (const auto& p : t.alpn) {
    if (p.empty() || p.size() > 255) return fail("invalid ALPN protocol '" + p + "'");
    out->alpn_wire_ += static_cast<char>(p.size());
    out->alpn_wire_ += p;
  }

  for (std::size_t i = 0; i < t.certificates.size(); ++i) {
    const auto& c = t.certificates[i];
    // Read once: the loader's checks (for their messages) and the context see the same bytes.
    std::string cert_pem, key_pem, why;
    if (!config::read_pem_file(c.cert, cert_pem, &why) ||
        !config::read_pem_file(c.key, key_pem, &why))
      return fail(why);
    auto check = config::check_certificate_pem(cert_pem, key_pem, c.cert, c.key);
    if (check.what != config::certificate_check::problem::none) return fail(check.message);

    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    SSL_CTX* native = ctx->native_handle();
    SSL_CTX_set_min_proto_version(native, t.min_version == config::tls_options::version::tls1_3
                                              ? TLS1_3_VERSION
                                              : TLS1_2_VERSION);
    SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Idle keep-alive connections give their read/write buffers back (about 34 KiB each).
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    // Resumption by session tickets only (stateless): no session cache shared by the workers.
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_cipher_list(native, t.ciphers.empty() ? default_ciphers : t.ciphers.c_str()) != 1)
      return fail(openssl_error("cipher list refused"));

    boost::system::error_code ec;
    ctx->use_certificate_chain(asio::buffer(cert_pem), ec);
    if (ec) return fail("'" + c.cert + "': " + ec.message());
    ctx->use_private_key(asio::buffer(key_pem), asio::ssl::context::pem, ec);
    if (ec) return fail("'" + c.key + "': " + ec.message());
    if (SSL_CTX_check_private_key(native) != 1)
      return fail("the private key in '" + c.key + "' does not match the certificate in '" +
                  c.cert + "'");

    SSL_CTX_set_tlsext_servername_callback(native, &on_server_name);
    SSL_CTX_set_tlsext_servername_arg(native, out.get());
    SSL_CTX_set_alpn_select_cb(native, &on_alpn, out.get());

    std::vector<std::string> names;
    if (!c.server_names.empty()) {
      for (const auto& n : c.server_names) names.push_back(lower(n));
    } else {
      names = config::dns_names(SSL_CTX_get0_certificate(native));
    }
    for (const auto& n : names) out->by_name_.emplace(n, i);  // the first certificate wins
    out->names_.push_back(std::move(names));
    out->contexts_.push_back(std::move(ctx));
  }
  ERR_clear_error();
  return out;
}

std::string_view negotiated_alpn(const SSL* ssl) noexcept {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  if (ssl) SSL_get0_alpn_selected(ssl, &p, &n);
  return p ? std::string_view(reinterpret_cast<const char*>(p), n) : std::string_view{};
}

}  // namespace sluice::net
