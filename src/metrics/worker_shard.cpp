#include "sluice/metrics/worker_shard.hpp"

namespace sluice::metrics {

worker_shard::worker_shard(unsigned worker, std::size_t listeners, std::size_t clusters,
                           bool enabled, std::size_t routes)
    : worker_(worker), enabled_(enabled) {
  grow(listeners, clusters, routes);
}

void worker_shard::grow(std::size_t listeners, std::size_t clusters, std::size_t routes) {
  listeners_.grow(listeners);
  clusters_.grow(clusters);
  routes_.grow(routes);
}

}  // namespace sluice::metrics
