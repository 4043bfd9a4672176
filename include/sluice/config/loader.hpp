// Loads and validates a YAML configuration, reporting every error with file:line:col and key path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::config {

/// One problem found in a configuration file. Lines and columns are 1-based (0 when unknown).
struct diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key_path;  ///< e.g. "clusters[1].endpoints[0].weight"; empty for the whole file
  std::string message;

  /// "FILE:LINE:COL: key.path: message". Without a position (e.g. a file that cannot be opened)
  /// it is "FILE: message"; without a key path the "key.path: " part is left out.
  std::string to_string() const;
};

struct load_result {
  std::optional<config> value;       ///< set only when errors is empty
  std::vector<diagnostic> errors;    ///< every error found, in file order
};

/// Reads and validates `path`. Never throws. A file that cannot be read gives exactly one
/// diagnostic naming the file.
load_result load_file(const std::string& path);

/// Same, from text; `name` is used as the file name in diagnostics (and as config::file).
load_result load_string(std::string_view yaml, const std::string& name);

/// Parses "500ms", "2s", "1m", "1h", "1m30s", "0s": one or more integer+unit groups with units
/// (h, m, s, ms) in decreasing order, no sign, no spaces. nullopt on anything else, including a
/// bare number ("30" is ambiguous) and values that overflow.
std::optional<duration> parse_duration(std::string_view text);

/// Parses a byte size: a plain integer ("65536") or an integer with a binary suffix
/// k/K = KiB, m/M = MiB, g/G = GiB ("512k", "1m", "2G"). nullopt on anything else or overflow.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace sluice::config
