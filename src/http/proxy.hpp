// Entry points of the HTTP/1.1 data plane, used by app.cpp. Internal header: includes Asio.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sluice/config/config.hpp"
#include "sluice/log/access_log.hpp"
#include "sluice/metrics/registry.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::http {

class router;

/// Immutable, shared by all workers: one per configured http listener.
struct listener_state {
  const config::listener* cfg = nullptr;
  std::size_t index = 0;  ///< position in config::listeners (metrics label)
  std::shared_ptr<const router> routes;
  /// Index into the worker's cluster list for each route (same order as cfg->routes;
  /// -1 for direct responses).
  std::vector<int> route_cluster;
};

/// Everything one worker needs that is not shared: snapshot caches, the upstream keep-alive
/// pool, the access log buffer, and the registry of live sessions for draining.
/// Lives on, and is only touched from, its worker's thread.
class worker_state;

std::shared_ptr<worker_state> make_worker_state(
    boost::asio::io_context& io, const std::vector<std::shared_ptr<pool::cluster>>& clusters,
    std::shared_ptr<log::access_log> access_log,
    std::shared_ptr<metrics::registry> metrics = nullptr, unsigned worker_index = 0);

/// Starts serving one accepted downstream connection (call on the worker's thread).
void start_session(boost::asio::ip::tcp::socket socket,
                   std::shared_ptr<const listener_state> listener,
                   const std::shared_ptr<worker_state>& worker);

/// Begins a graceful drain on this worker (call on the worker's thread): idle keep-alive
/// connections are closed, busy ones finish their current request and answer with
/// `Connection: close`.
void drain(worker_state& worker);

/// Sessions alive on this worker (safe to read from any thread).
std::size_t active_sessions(const worker_state& worker) noexcept;

}  // namespace sluice::http
