// Active health checkers: one probe of one backend (tcp connect, http request, grpc health), no state kept. Internal header: Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "sluice/config/config.hpp"
#include "sluice/core/backend.hpp"

namespace sluice::health {

struct check_result {
  core::check_code code = core::check_code::none;
  std::uint16_t status = 0;  ///< HTTP status when one was read, else 0
  std::string detail;        ///< human-readable reason of a failure (for the log)

  bool passed() const noexcept { return code == core::check_code::ok; }
};

/// One probe of a backend. Implementations keep no state between probes, so one checker
/// serves every backend of a cluster, and a new kind of check plugs in as one more
/// implementation (tcp, http, and grpc.health.v1 over the sans-I/O HTTP/2 client session).
/// Contract: the probe runs on the awaiting coroutine's executor, never throws, and completes
/// within about `timeout` whatever the backend does (connect, send and answer all count).
class checker {
 public:
  virtual ~checker() = default;
  virtual boost::asio::awaitable<check_result> probe(const core::backend& b,
                                                     std::chrono::milliseconds timeout) = 0;
};

/// Passes when a TCP connection to the backend is established.
std::unique_ptr<checker> make_tcp_checker();

/// Sends `method path` (HTTP/1.1, Host: cfg.host or the backend's address, Connection: close)
/// and passes when the status is in cfg.expect_status and, if cfg.expect_body is set, the first
/// 64 KiB of the body contain it. Without expect_body the body is not read.
std::unique_ptr<checker> make_http_checker(const config::health_check& cfg);

/// grpc.health.v1.Health/Check over HTTP/2 with prior knowledge (h2c), one connection per
/// probe, with HealthCheckRequest.service = cfg.service. Passes on HTTP 200, grpc-status 0 and
/// status SERVING; the failure detail names the cause ("not_serving", "grpc_status_12", ...).
/// `tls_cluster`: a protocol h2 cluster, whose `tls` settings the probes then use (HTTP/2 over
/// TLS, as the cluster's traffic); null: h2c.
std::unique_ptr<checker> make_grpc_checker(const config::health_check& cfg,
                                           const config::cluster* tls_cluster = nullptr);

/// The checker for cfg.type; nullptr for `none`.
std::unique_ptr<checker> make_checker(const config::health_check& cfg);

/// True when `status` lies in one of `ranges`.
bool status_expected(std::uint32_t status, const std::vector<config::status_range>& ranges) noexcept;

}  // namespace sluice::health
