// What would change between two configurations, as human-readable lines (`sluice -t --diff`).
#pragma once

#include <string>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::config {

/// One difference. `subject` names the object ("listener web", "cluster api"; empty for a
/// top-level setting), `detail` says what about it changed ("timeouts.connect: 1s -> 2s",
/// "endpoint 127.0.0.1:8004 added (weight 1)"); an object added or removed as a whole has a
/// short summary as detail.
struct change {
  enum class kind { added, removed, changed };
  kind what = kind::changed;
  std::string subject;
  std::string detail;

  /// "+ subject: detail", "- subject: detail" or "~ subject: detail" (no subject: "~ detail").
  std::string to_string() const;
  bool operator==(const change&) const = default;
};

struct diff_options {
  /// `from` describes a running instance (see status_view): endpoint lists of its clusters with
  /// discovery hold the discovered backends too, so an endpoint missing from `to` there is not
  /// reported as removed.
  bool from_running = false;
};

/// Every difference from `from` to `to`, in a stable order: top-level settings, then listeners,
/// then clusters (objects in `to`'s order, removed ones after in `from`'s order). Listeners and
/// clusters are matched by name, routes by (host, path_prefix), endpoints by address.
/// Secrets (admin.token, etcd password) are reported as changed without their values.
/// Empty when the two are equivalent. Pure: no I/O.
std::vector<change> diff(const config& from, const config& to, const diff_options& opts = {});

/// `c` reduced to what the admin /status document shows of a configuration: listener name,
/// address, protocol, tcp cluster and routes (match, cluster, direct status); cluster name,
/// policy, protocol, health check type, whether discovery is on, endpoints with weights; every
/// other field at its default. diff(status_view(a), status_view(b)) compares only those.
config status_view(const config& c);

/// "1h", "1m30s", "500ms", "0s": the shortest text parse_duration reads back as `d`.
std::string format_duration(duration d);

}  // namespace sluice::config
