// Wiring of a running sluice: config → clusters → workers → listeners.
#pragma once

#include <string>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::app {

/// Checks what the loader cannot: endpoint names resolve, the features used are supported.
/// Returns one message per problem (empty when the config can run).
std::vector<std::string> preflight(const config::config& cfg);

/// Runs sluice until it is told to stop and has drained. Returns the process exit status.
int run(const config::config& cfg);

}  // namespace sluice::app
