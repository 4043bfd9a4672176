// TLS termination contexts of one listener: a context per certificate, chosen by SNI, with ALPN.
// Internal header: includes Asio's SSL support.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "sluice/config/config.hpp"

namespace sluice::net {

/// Immutable once built and shared by every worker (OpenSSL contexts are safe to use from many
/// threads). Built from the files on disk each time: a configuration reload builds a new one
/// with whatever the certificate files hold then; connections already open keep theirs.
class tls_server {
 public:
  /// The context a handshake starts with (the default certificate's); the SNI callback
  /// switches to another certificate's context when the client names one of its hosts.
  boost::asio::ssl::context& context() const noexcept { return *contexts_.front(); }

  std::chrono::milliseconds handshake_timeout() const noexcept { return handshake_timeout_; }

  /// Index of the certificate serving `server_name` (case-insensitive): an exact name first,
  /// then a "*.rest" wildcard covering one more label, else 0 (the default certificate).
  std::size_t select(std::string_view server_name) const;

  /// The server names each certificate is chosen for (configured, or read from it).
  const std::vector<std::vector<std::string>>& names() const noexcept { return names_; }

  /// The OpenSSL context of certificate `i` (0 <= i < names().size()).
  SSL_CTX* native_context(std::size_t i) const noexcept { return contexts_[i]->native_handle(); }

  /// ALPN protocols offered, in order of preference, in wire format (length-prefixed).
  const std::string& alpn_wire() const noexcept { return alpn_wire_; }

  /// Builds the contexts; null with `*err` set when a file is unreadable, a key does not match
  /// its certificate, or OpenSSL refuses a setting. `listener.tls` must be set.
  friend std::shared_ptr<const tls_server> make_tls_server(const config::listener& listener,
                                                           std::string* err);

  tls_server(const tls_server&) = delete;
  tls_server& operator=(const tls_server&) = delete;

 private:
  tls_server() = default;

  std::vector<std::unique_ptr<boost::asio::ssl::context>> contexts_;
  std::vector<std::vector<std::string>> names_;
  std::unordered_map<std::string, std::size_t> by_name_;  // exact names and "*.suffix" patterns
  std::string alpn_wire_;
  std::chrono::milliseconds handshake_timeout_{10000};
};

std::shared_ptr<const tls_server> make_tls_server(const config::listener& listener,
                                                  std::string* err);

/// The ALPN protocol the handshake of `ssl` settled on ("h2", "http/1.1"), or empty.
std::string_view negotiated_alpn(const SSL* ssl) noexcept;

}  // namespace sluice::net
