// A resolved upstream/listen address ("host:port" text plus the socket address), free of Asio.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace sluice::core {

/// A numeric IPv4/IPv6 socket address with the text it was written as.
/// Hostnames are resolved once, when the address is made (`resolve`).
struct address {
  std::string text;  ///< as configured, e.g. "127.0.0.1:8001", "[::1]:80", "localhost:8080"
  sockaddr_storage storage{};
  socklen_t length = 0;

  std::uint16_t port() const noexcept;
  /// Numeric form: "127.0.0.1:8001" or "[::1]:8001".
  std::string numeric() const;
  /// Numeric host without port and brackets: "127.0.0.1", "::1".
  std::string host() const;
};

/// Splits "host:port" / "[v6]:port". Returns nullopt if the shape or port (1..65535, or 0 when
/// allow_zero_port) is invalid.
struct host_port {
  std::string host;
  std::uint16_t port = 0;
};
std::optional<host_port> split_host_port(std::string_view text, bool allow_zero_port = false);

/// Parses and resolves (getaddrinfo, numeric first) "host:port". On failure returns nullopt and
/// puts a human-readable reason into *error when given.
std::optional<address> resolve(std::string_view text, std::string* error = nullptr,
                               bool allow_zero_port = false);

}  // namespace sluice::core
