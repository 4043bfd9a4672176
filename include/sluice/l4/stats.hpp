// Counters of one tcp listener, shared by all workers (relaxed atomics, read at scrape time).
#pragma once

#include "sluice/metrics/tcp_listener_counters.hpp"

namespace sluice::l4 {

/// The listener's rare-event counters (limit slots, connect failures, early closes by reason),
/// exported by the metrics registry. Accepted/active connections and relayed bytes are counted
/// in the worker's metrics shard; per-backend counters live in core::backend_stats (requests =
/// connections, connect_failures, failures = resets, bytes_sent/bytes_received).
using listener_stats = metrics::tcp_listener_counters;

}  // namespace sluice::l4
