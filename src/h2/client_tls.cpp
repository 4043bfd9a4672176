#include "client_tls.hpp"

#include <unordered_map>

#include "sluice/core/address.hpp"
#include "sluice/log/log.hpp"

namespace sluice::h2 {

namespace asio = boost::asio;
using boost::system::error_code;

std::shared_ptr<asio::ssl::context> client_tls_context(const config::cluster& cfg,
                                                       std::string& key) {
  // By settings; null: could not be built (logged once per thread).
  thread_local std::unordered_map<std::string, std::shared_ptr<asio::ssl::context>> tls_contexts;
  static const config::upstream_tls defaults;
  const auto& t = cfg.tls ? *cfg.tls : defaults;
  key = t.ca + '\n' + t.server_name + '\n' + (t.verify ? "1" : "0") + '\n' + t.cert + '\n' + t.key;
  auto it = tls_contexts.find(key);
  if (it != tls_contexts.end()) return it->second;
  namespace ssl = asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  error_code ec;
  std::string what;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  ctx->set_verify_mode(t.verify ? ssl::verify_peer : ssl::verify_none, ec);
  if (!t.ca.empty()) {
    ctx->load_verify_file(t.ca, ec);
    if (ec) what = "tls.ca '" + t.ca + "': " + ec.message();
  } else {
    ctx->set_default_verify_paths(ec);
    if (ec) what = "the system's trusted roots: " + ec.message();
  }
  if (what.empty() && !t.cert.empty()) {
    ctx->use_certificate_chain_file(t.cert, ec);
    if (ec) what = "tls.cert '" + t.cert + "': " + ec.message();
    if (what.empty()) {
      ctx->use_private_key_file(t.key, ssl::context::pem, ec);
      if (ec) what = "tls.key '" + t.key + "': " + ec.message();
    }
  }
  static constexpr unsigned char alpn[] = {2, 'h', '2'};
  if (what.empty() && SSL_CTX_set_alpn_protos(ctx->native_handle(), alpn, sizeof alpn) != 0)
    what = "cannot offer ALPN h2";
  if (!what.empty()) {
    SLUICE_LOG(warn, "cluster " << cfg.name << ": no TLS toward its backends: " << what);
    ctx.reset();
  }
  tls_contexts.emplace(key, ctx);
  return ctx;
}

client_tls_peer client_tls_peer_of(const config::cluster& cfg, const core::backend& b) {
  client_tls_peer p;
  if (cfg.tls) {
    p.verify = cfg.tls->verify;
    p.server_name = cfg.tls->server_name;
  }
  if (p.server_name.empty())
    if (auto hp = core::split_host_port(b.addr().text)) p.server_name = hp->host;
  return p;
}

std::string client_tls_failure(const std::string& backend, SSL* ssl, const std::string& why,
                               const client_tls_peer& peer) {
  std::string text = "upstream " + backend + " TLS handshake failed: " + why;
  if (ssl)
    if (long v = SSL_get_verify_result(ssl); peer.verify && v != X509_V_OK)
      text += std::string(" (") + X509_verify_cert_error_string(v) + ", verifying as '" +
              peer.server_name + "')";
  return text;
}

void log_client_tls_failure(const std::string& backend, SSL* ssl, const std::string& why,
                            const client_tls_peer& peer) {
  SLUICE_LOG(warn, client_tls_failure(backend, ssl, why, peer));
}

}  // namespace sluice::h2
