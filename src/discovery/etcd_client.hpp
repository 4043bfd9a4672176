// A minimal etcd v3 JSON-gateway client over HTTP/1.1 (plain or TLS), for coroutines.
// Internal header: includes Asio and Beast.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>

#include "sluice/config/config.hpp"

namespace sluice::discovery::etcd {

using error_code = boost::system::error_code;
using std::chrono::milliseconds;

/// Builds the client TLS context: verifies the server against `ca` (or the system roots) and
/// presents `cert`/`key` when given. nullptr with *error on an unreadable file.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const config::etcd_tls& tls,
                                                            std::string* error);

/// `reason` (an error from the gateway), with a hint appended when it has a well-known cause:
/// over TLS, etcd 3.4's JSON gateway answers every call with "connection closed" (code 14)
/// when etcd runs with --client-cert-auth and its server certificate may not be used as a
/// client certificate, because the gateway connects to etcd's own gRPC port with it.
std::string explain_gateway_error(const std::string& reason, bool tls);

struct http_reply {
  unsigned status = 0;
  std::string body;
};

struct credentials {
  std::string username;  ///< empty: no authentication
  std::string password;
};

/// One HTTP/1.1 connection to one etcd member. Either unary calls (`post`, keep-alive between
/// them) or, last, one streaming call (`open_stream` then `read_stream` until it ends). Every
/// method runs on the connection's executor; `close()` (same executor) makes the pending
/// operation finish with an error. Errors come back as error codes, with a readable reason in
/// `last_error()`.
class connection {
 public:
  connection(boost::asio::any_io_executor ex, std::shared_ptr<boost::asio::ssl::context> tls);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Resolves and connects to "host:port" (then the TLS handshake), all within `timeout`.
  boost::asio::awaitable<error_code> connect(std::string endpoint, milliseconds timeout);

  /// POSTs a JSON body and reads the whole answer (any HTTP status) within `timeout`.
  boost::asio::awaitable<error_code> post(std::string_view target, std::string body,
                                          http_reply& out, milliseconds timeout);

  /// Calls `post` with the auth token; when the answer is an auth error and `creds` has a user,
  /// authenticates again and retries once (an expired token is routine, not a failure).
  boost::asio::awaitable<error_code> call(std::string_view target, std::string body,
                                          const credentials& creds, http_reply& out,
                                          milliseconds timeout);

  /// `/v3/auth/authenticate`; stores the token sent with every later request.
  boost::asio::awaitable<error_code> authenticate(const credentials& creds, milliseconds timeout);

  /// Sends a streaming request and reads the answer's head within `timeout`. Reading the body
  /// afterwards has no deadline (a watch can stay quiet for hours; TCP keep-alive probes notice
  /// a peer that vanished).
  boost::asio::awaitable<error_code> open_stream(std::string_view target, std::string body,
                                                 unsigned& status, milliseconds timeout);
  /// Appends the next piece of the streamed body to `out`. The end of the stream is an error
  /// (`boost::beast::http::error::end_of_stream`).
  boost::asio::awaitable<error_code> read_stream(std::string& out);

  void close() noexcept;
  bool is_open() const noexcept;
  const std::string& endpoint() const noexcept { return endpoint_; }
  const std::string& last_error() const noexcept { return last_error_; }
  void clear_token() { token_.clear(); }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::string endpoint_;
  std::string token_;
  std::string last_error_;
};

}  // namespace sluice::discovery::etcd
