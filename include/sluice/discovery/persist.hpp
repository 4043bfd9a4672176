// The last known endpoint set on disk, so a restart while etcd is unreachable still routes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sluice/pool/cluster.hpp"

namespace sluice::discovery {

/// Writes `endpoints` as a JSON list [{"address": "host:port", "weight": N}, ...] to `path`
/// atomically: a temporary file in the same directory, fsync, then rename over `path`, so a
/// reader (or a crash) sees the old file or the new one, never half of one. False with *error
/// on an I/O failure (the old file stays).
bool save_endpoints(const std::string& path, const std::vector<pool::endpoint>& endpoints,
                    std::string* error);

/// Reads a file written by save_endpoints. nullopt with *error when the file is missing or not
/// such a list; entries that no longer parse or resolve are left out (and counted in
/// *skipped when given).
std::optional<std::vector<pool::endpoint>> load_endpoints(const std::string& path,
                                                          std::string* error,
                                                          std::size_t* skipped = nullptr);

}  // namespace sluice::discovery
