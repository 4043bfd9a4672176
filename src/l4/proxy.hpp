// Entry points of the L4 (TCP) data plane, used by app.cpp. Internal header: includes Asio.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sluice/config/config.hpp"
#include "sluice/l4/sni_router.hpp"
#include "sluice/l4/stats.hpp"
#include "sluice/metrics/registry.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::l4 {

/// Immutable (except the atomic counters), shared by all workers: one per tcp listener.
struct listener_state {
  const config::listener* cfg = nullptr;
  std::size_t index = 0;  ///< position in config::listeners (metrics label)
  /// Index into the worker's cluster list of the listener's `cluster` (-1: none, then only
  /// SNI routes can pick one).
  int cluster = -1;
  /// The clusters `cluster` and the SNI targets index (the list given to make_listener_state).
  std::vector<std::shared_ptr<pool::cluster>> clusters;
  std::shared_ptr<const config::config> config;  ///< keeps `cfg` alive (set by the caller)
  /// Present when cfg->tcp.sni_routes is set; targets are cluster indices, fallback `cluster`.
  std::shared_ptr<const sni_router> sni;
  std::shared_ptr<listener_stats> stats = std::make_shared<listener_stats>();
};

/// Builds the state of `cfg` (a tcp listener), resolving cluster names against `clusters`
/// (kept in the state: sessions use the clusters through it). A name that is not found
/// becomes -1 (the loader has already rejected unknown names). `index` is the listener's
/// position in config::listeners; with `metrics`, its counters are the registry's (exported
/// as a TCP listener), else private ones.
std::shared_ptr<listener_state> make_listener_state(
    const config::listener& cfg, const std::vector<std::shared_ptr<pool::cluster>>& clusters,
    std::size_t index = 0, const std::shared_ptr<metrics::registry>& metrics = nullptr);

/// Per-worker state: snapshot caches, small pools of empty pipes (splice) and relay buffers
/// reused across connections, the drain flag and the count of live sessions. Lives on, and is
/// only touched from, its worker's thread (except active_sessions()).
class worker_state;

/// With `metrics`, sessions on this worker count connections, bytes and connect failures in
/// shard `worker_index` (the worker's own).
std::shared_ptr<worker_state> make_worker_state(
    boost::asio::io_context& io, std::shared_ptr<metrics::registry> metrics = nullptr,
    unsigned worker_index = 0);

/// Starts relaying one accepted downstream connection (call on the worker's thread).
void start_session(boost::asio::ip::tcp::socket socket,
                   std::shared_ptr<const listener_state> listener,
                   const std::shared_ptr<worker_state>& worker);

/// Begins a drain on this worker (call on the worker's thread): sessions still waiting (for
/// a limit slot) give up and close; sessions that are relaying continue until they end or
/// the runtime's drain timeout stops the worker.
void drain(worker_state& worker);

/// Sessions alive on this worker (safe to read from any thread).
std::size_t active_sessions(const worker_state& worker) noexcept;

}  // namespace sluice::l4
