// Entry points of the HTTP/1.1 data plane, used by app.cpp. Internal header: includes Asio.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sluice/config/config.hpp"
#include "sluice/log/access_log.hpp"
#include "sluice/metrics/registry.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::net {
class tls_server;
}

namespace sluice::http {

class router;

/// Immutable, shared by all workers: one per configured http listener, per configuration
/// generation (a reload builds new ones; sessions pick the newest up between requests).
struct listener_state {
  std::shared_ptr<const config::config> config;  ///< keeps `cfg` alive
  const config::listener* cfg = nullptr;
  std::size_t index = 0;  ///< the listener's metrics slot (stable across reloads for a name)
  std::shared_ptr<const router> routes;
  /// The clusters the routes use, and for each route (same order as cfg->routes) an index into
  /// `clusters` (-1 for direct responses).
  std::vector<std::shared_ptr<pool::cluster>> clusters;
  std::vector<int> route_cluster;
  /// The metrics slot of each route (registry::route_slot; same order as cfg->routes). Shorter
  /// than the routes (e.g. empty): the routes past its end are not counted per route.
  std::vector<std::size_t> route_metrics;
  /// Smallest positive timeout of those clusters (the session watchdog's granularity).
  std::chrono::milliseconds min_cluster_timeout{0};
  /// TLS termination (net::make_tls_server, built with the state); null: cleartext.
  std::shared_ptr<const net::tls_server> tls;
};

/// Builds the state of http listener `l` (an element of `cfg->listeners`) with metrics slot
/// `slot`; routes resolve their cluster by name in `clusters` (unknown names: the route answers
/// 500; the loader rejects them anyway).
std::shared_ptr<listener_state> make_listener_state(
    std::shared_ptr<const config::config> cfg, const config::listener& l, std::size_t slot,
    const std::vector<std::shared_ptr<pool::cluster>>& clusters);

/// The newest state of the listener with metrics slot `slot`, as published on the calling
/// worker thread (null when none or removed). Sessions compare it with theirs between requests.
const std::shared_ptr<const listener_state>& current_listener(std::size_t slot) noexcept;
/// Publishes (or with null, withdraws) the newest state of listener `slot` on the calling
/// worker thread; call it on every worker (post) when a configuration takes effect.
void publish_listener(std::size_t slot, std::shared_ptr<const listener_state> state);

/// Everything one worker needs that is not shared: snapshot caches, the upstream keep-alive
/// pool, the access log buffer, and the registry of live sessions for draining.
/// Lives on, and is only touched from, its worker's thread.
class worker_state;

std::shared_ptr<worker_state> make_worker_state(
    boost::asio::io_context& io, std::shared_ptr<log::access_log> access_log,
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
