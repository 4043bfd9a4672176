// The admin /status document (JSON): listeners, routes, clusters, backends with health and load.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "sluice/config/config.hpp"
#include "sluice/metrics/registry.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::admin {

/// Everything the status document is made from. Pointers must stay valid during the call.
struct status_inputs {
  const config::config* cfg = nullptr;
  std::span<const std::shared_ptr<pool::cluster>> clusters;  ///< config order
  const metrics::registry* metrics = nullptr;                ///< null: no traffic figures
  std::span<const std::uint16_t> listener_ports;  ///< bound ports, config order; may be empty
  /// Metrics slot of each listener, config order; empty: the position is the slot. (A
  /// cluster's slot is its own metrics_slot(), or its position when unset.)
  std::span<const std::size_t> listener_slots;
  bool draining = false;
  std::chrono::system_clock::time_point started{};
};

/// Builds the document (shape in docs/metrics.md, "Status JSON"). Reads only atomics and
/// published snapshots: safe on the control thread while workers run. Never throws on
/// inconsistent inputs (e.g. fewer clusters than configured): missing parts are left out.
boost::json::value status(const status_inputs& in);

/// The current backends of every cluster, for metrics::registry::set_backends (a cluster's
/// metrics index is its metrics_slot(), or its position in `clusters` when unset). The
/// enumerator keeps `clusters` alive.
metrics::backend_enumerator backend_enumerator(std::vector<std::shared_ptr<pool::cluster>> clusters);

}  // namespace sluice::admin
