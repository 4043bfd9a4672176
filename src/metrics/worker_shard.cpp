#include "sluice/metrics/worker_shard.hpp"

namespace sluice::metrics {

worker_shard::worker_shard(unsigned worker, std::size_t listeners, std::size_t clusters,
                           bool enabled)
    : worker_(worker),
      enabled_(enabled),
      listeners_n_(listeners),
      clusters_n_(clusters),
      // Each array is its own allocation and its elements are cache-line aligned, so nothing
      // a worker writes shares a line with another worker's counters.
      listeners_(std::make_unique<listener_counters[]>(listeners)),
      clusters_(std::make_unique<cluster_counters[]>(clusters)) {}

}  // namespace sluice::metrics
