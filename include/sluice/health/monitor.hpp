// Health monitor of one cluster: active check timers, hysteresis, outlier ejection and slow-start steps.
#pragma once

#include <memory>

#include "sluice/pool/cluster.hpp"

namespace boost::asio {
class io_context;
}

namespace sluice::health {

class checker;

/// Runs on the control io_context (one thread), whatever the worker count:
/// - active checks (cluster config `health`): one probe per backend per interval (or
///   unhealthy_interval while it is down), spread by `jitter`, judged by the hysteresis
///   (health/state.hpp); a flip updates core::backend_health and republishes the cluster;
/// - passive health (cluster config `outlier`): pool::lease::report counts failures on the
///   workers; at the threshold the cluster hands the backend here (posted to the control
///   context), which ejects it for base_ejection * n (capped), within max_ejection_percent,
///   and brings it back when the time is up;
/// - slow start: while a backend ramps, republishes the cluster every slow_start / 10;
/// - logs health flips, ejections, returns and entering/leaving panic mode.
/// A new backend starts healthy but unconfirmed: its first probe runs at once and a failure
/// takes it out immediately; then the usual thresholds apply.
/// Membership: the monitor watches the cluster and re-syncs after every cluster::update()
/// (posted to the control context), keeping the probe state of backends that stay.
/// Thread-safety: construct anywhere; everything else runs on the control context. Destroy it
/// on the control thread or after the control context has stopped running.
class monitor {
 public:
  virtual ~monitor() = default;
  /// Re-reads the cluster's membership now (control thread). Normally not needed: updates are
  /// picked up by themselves.
  virtual void sync() = 0;
  /// Stops every timer and probe and detaches from the cluster (also done by the destructor).
  virtual void stop() = 0;
};

/// Starts monitoring `cluster` on `control` (the first sync is posted, so it runs once the
/// context runs). Always returns a monitor; with neither `health` nor `outlier` nor
/// `slow_start` configured it only watches for panic transitions.
std::unique_ptr<monitor> make_monitor(boost::asio::io_context& control,
                                      std::shared_ptr<pool::cluster> cluster);

/// Same with a given checker instead of the one cluster config asks for (tests, and the gRPC
/// checker once it exists). `probe` may be null: no active checks.
std::unique_ptr<monitor> make_monitor(boost::asio::io_context& control,
                                      std::shared_ptr<pool::cluster> cluster,
                                      std::shared_ptr<checker> probe);

}  // namespace sluice::health
