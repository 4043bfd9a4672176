// Wiring of a running sluice: config → clusters → workers → listeners.
#pragma once

#include <string>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::app {

/// Checks what the loader cannot: endpoint names resolve, the features used are supported.
/// Returns one message per problem (empty when the config can run).
std::vector<std::string> preflight(const config::config& cfg);

struct run_options {
  /// Take the listening sockets over from the process running with the same upgrade_socket
  /// (binary upgrade) instead of binding them; it drains once this one listens.
  bool upgrade = false;
};

/// Runs sluice until it is told to stop and has drained. Returns the process exit status.
int run(const config::config& cfg, const run_options& opts = {});

}  // namespace sluice::app
