// TLS toward HTTP/2 backends (clusters with protocol: h2): the client context built from a
// cluster's tls settings, and the client handshake. Used by the HTTP/2 upstream connections and
// by HTTP/1.1 sessions sending to h2 clusters. Internal header: Asio and OpenSSL.
#pragma once

#include <cstring>
#include <memory>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sluice/config/config.hpp"
#include "sluice/core/backend.hpp"

namespace sluice::h2 {

/// The client context for `cfg`'s tls settings (or the defaults), built once per thread and
/// settings; null when it cannot be built (a missing CA file, say: logged once). `key` gets the
/// settings' identity: connections are shared only between clusters with the same key.
std::shared_ptr<boost::asio::ssl::context> client_tls_context(const config::cluster& cfg,
                                                              std::string& key);

/// The name sent as SNI (unless an IP literal) and verified: `tls.server_name`, else the
/// endpoint's host. `verify`: the settings' `tls.verify`.
struct client_tls_peer {
  std::string server_name;
  bool verify = true;
};
client_tls_peer client_tls_peer_of(const config::cluster& cfg, const core::backend& b);

/// Logs a failed handshake with `backend` (a warning), with the verification error if any.
void log_client_tls_failure(const std::string& backend, SSL* ssl, const std::string& why,
                            const client_tls_peer& peer);

/// Why a handshake with `backend` failed: `why`, and the verification error if any.
std::string client_tls_failure(const std::string& backend, SSL* ssl, const std::string& why,
                               const client_tls_peer& peer);

/// The client handshake over `tls` (its socket connected): SNI, host name verification when
/// `peer.verify`, ALPN h2 required. False on failure: logged as a warning, unless the handshake
/// was cancelled (a connect timeout, which the caller reports), or, with `why`, described there
/// instead (health probes, which report through the backend's health state).
template <class Stream>
boost::asio::awaitable<bool> client_tls_handshake(boost::asio::ssl::stream<Stream>& tls,
                                                  const client_tls_peer& peer,
                                                  const std::string& backend,
                                                  std::string* why = nullptr) {
  namespace asio = boost::asio;
  SSL* ssl = tls.native_handle();
  boost::system::error_code ec;
  asio::ip::make_address(peer.server_name, ec);
  bool ip_literal = !ec;
  if (!peer.server_name.empty() && !ip_literal)
    SSL_set_tlsext_host_name(ssl, peer.server_name.c_str());  // SNI takes host names only
  if (peer.verify) tls.set_verify_callback(asio::ssl::host_name_verification(peer.server_name));
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client,
                                            asio::as_tuple(asio::use_awaitable));
  if (hec) {
    if (why)
      *why = client_tls_failure(backend, ssl, hec.message(), peer);
    else if (hec != asio::error::operation_aborted)
      log_client_tls_failure(backend, ssl, hec.message(), peer);
    co_return false;
  }
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  if (len != 2 || std::memcmp(proto, "h2", 2) != 0) {
    static const std::string no_h2 =
        "the backend did not select h2 by ALPN (protocol: h2 needs an HTTP/2 over TLS backend)";
    if (why)
      *why = client_tls_failure(backend, nullptr, no_h2, peer);
    else
      log_client_tls_failure(backend, nullptr, no_h2, peer);
    co_return false;
  }
  co_return true;
}

}  // namespace sluice::h2
