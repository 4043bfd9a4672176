// The admin listener: /metrics, /status, the status page, /ready, /live, backend drain.
// Internal header: includes Asio.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "sluice/config/config.hpp"
#include "sluice/metrics/registry.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::admin {

/// What a configuration reload did (POST /reload answers it as JSON).
struct reload_result {
  bool ok = false;
  std::uint64_t version = 0;          ///< configuration version now serving
  std::vector<std::string> errors;    ///< why the new file was rejected
  std::vector<std::string> changes;   ///< what changed (config::change::to_string lines)
};

struct server_options {
  const config::config* cfg = nullptr;  ///< must outlive the server (or the next reconfigure)
  std::vector<std::shared_ptr<pool::cluster>> clusters;  ///< config order
  std::shared_ptr<metrics::registry> metrics;            ///< null: /metrics answers 503
  std::vector<std::size_t> listener_slots;  ///< metrics slot per listener; empty: position
  /// POST /reload; runs on the control thread. Empty: 501.
  std::function<reload_result()> reload;
};

/// HTTP/1.1 (Beast) on the control io_context: one coroutine per admin connection, keep-alive,
/// bounded request size (16 KiB head, 64 KiB body), 30 s timeouts, at most 64 connections.
/// Endpoints (see docs/metrics.md):
///   GET  /                  status page (HTML, polls /status)
///   GET  /metrics           Prometheus text format
///   GET  /status            JSON
///   GET  /ready             200 while serving, 503 once draining
///   GET  /live              200 while the control thread runs
///   POST /backends/CLUSTER/ADDRESS/drain | /undrain
///   POST /reload            reload the configuration file (200 applied, 422 rejected)
/// With admin.token set every endpoint except /, /ready and /live needs
/// `Authorization: Bearer TOKEN`. A POST carrying an Origin header that is not this listener's
/// own origin is refused (403), so a web page elsewhere cannot drain backends.
/// Thread-safety: construct, start() and stop() on the control thread; set_draining() and
/// set_listener_port() from any thread before or while it runs.
class server {
 public:
  server(boost::asio::io_context& control, server_options opts);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds cfg->admin.address and starts accepting. Returns the bound port; throws
  /// std::system_error naming the address when it cannot bind, std::invalid_argument when the
  /// address does not resolve.
  std::uint16_t start();
  /// From now on /ready answers 503 (the runtime is draining).
  void set_draining() noexcept;
  /// The port a listener (config index) is bound to, shown in /status. Call before run().
  void set_listener_port(std::size_t listener, std::uint16_t port);
  /// After a configuration reload (control thread): the configuration, clusters and listener
  /// slots /status shows from now on; listener ports are reset (set them again). The admin
  /// address itself is not re-bound.
  void reconfigure(const config::config* cfg, std::vector<std::shared_ptr<pool::cluster>> clusters,
                   std::vector<std::size_t> listener_slots);
  /// Closes the acceptor and every open admin connection (idempotent).
  void stop();
  /// Like start(), on a listening socket inherited from the previous process (binary upgrade)
  /// instead of binding admin.address; owns `fd` from the call on. Throws std::system_error.
  std::uint16_t start_inherited(int fd);
  /// The listening socket while accepting, else -1 (handed to a successor on upgrade).
  int listening_fd() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace sluice::admin
