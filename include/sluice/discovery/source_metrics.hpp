// How a discovery source's state reads in metrics and /status (a scrape-time probe).
#pragma once

#include <chrono>

#include "sluice/discovery/etcd_source.hpp"
#include "sluice/metrics/registry.hpp"

namespace sluice::discovery {

/// The sample of `s` at `now`: watching while connected; connecting before the first answer
/// and the first failure; error after a failure until the watch is back.
metrics::discovery_sample sample(const source_state& s,
                                 std::chrono::system_clock::time_point now) noexcept;

/// For metrics::registry::set_discovery_source. Keeps a reference to `source`: the source
/// must outlive every scrape (in the app, the admin listener stops before sources go).
metrics::discovery_probe metrics_probe(const etcd_source& source);

}  // namespace sluice::discovery
