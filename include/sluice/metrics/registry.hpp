// The process's metrics: per-worker shards, control-plane state and the Prometheus exposition.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include "sluice/core/backend.hpp"
#include "sluice/metrics/tcp_listener_counters.hpp"
#include "sluice/metrics/worker_shard.hpp"

namespace sluice::metrics {

/// A route's identity in the metrics: its listener's name and its label (the `route` label;
/// see config::route_label).
struct route_name {
  std::string listener;
  std::string route;
  friend auto operator<=>(const route_name&, const route_name&) = default;
};

/// Names that become label values, in config order. Given to the constructor, the names get
/// slots 0..n-1 in this order (so a config index is the slot until the first reload); given to
/// registry::retain, they are the names to export.
struct layout {
  std::vector<std::string> listeners;
  std::vector<std::string> clusters;
  unsigned workers = 1;
  bool enabled = true;  ///< false: the shards count nothing (benchmark baseline)
  std::vector<route_name> routes;  ///< routes of http listeners
};

/// What the scrape needs to know about one current backend. Supplied at scrape time by the
/// owner of the clusters (see registry::set_backends), so metrics needs no pool dependency.
/// Health (draining, ejected, active checks) is read from the backend itself.
struct backend_sample {
  std::size_t cluster = 0;  ///< the cluster's slot (registry::cluster_slot)
  const core::backend* backend = nullptr;
  bool ready = true;  ///< in the published ready set the policy picks from
};
using backend_visitor = std::function<void(const backend_sample&)>;
/// Calls the visitor once per current backend of every cluster.
using backend_enumerator = std::function<void(const backend_visitor&)>;

/// State of a cluster's discovery source.
enum class discovery_state { static_config, connecting, watching, error };
std::string_view to_string(discovery_state s) noexcept;

/// What the scrape and /status show about a cluster's discovery source, read from the source
/// itself at scrape time (see registry::set_discovery_source).
struct discovery_sample {
  discovery_state state = discovery_state::connecting;
  bool connected = false;                     ///< a watch is established right now
  std::int64_t revision = 0;                  ///< store revision the endpoint set reflects
  std::optional<double> last_event_age;       ///< seconds since the last change seen; none yet
  std::uint64_t skipped = 0;                  ///< unusable values seen
  std::uint64_t updates = 0;                  ///< endpoint sets delivered
  std::uint64_t disconnects = 0;              ///< sessions lost or failed
  std::uint64_t full_reads = 0;               ///< whole-prefix reads
  std::uint64_t endpoints = 0;                ///< size of the last delivered set
};
/// Reads a source's current state; called on the scraping thread, must not block.
using discovery_probe = std::function<discovery_sample()>;

/// Made once by the app after the runtime knows its worker count; lives until every worker
/// has stopped, across configuration reloads. Thread-safety: shard(w) is for worker w (see
/// worker_shard); every other member is safe from any thread. collect()/serialize() run on the
/// scraping thread (the admin listener's control thread) and never block the workers.
///
/// Slots. Every listener, cluster and route is counted under a slot: a small integer the hot
/// path passes to its shard. A name keeps its slot for the registry's lifetime, so counters of
/// names that survive a reload continue (Prometheus counters never reset on reload). Slots are
/// handed out on the control thread (listener_slot() etc.) before the configuration that uses
/// them reaches the workers (an asio post orders the memory); workers keep writing their shards
/// meanwhile: growing never moves or frees a counter. At most slot_array::max_slots (16384)
/// slots per kind: past that a slot is still returned but not counted.
class registry {
 public:
  explicit registry(layout l);
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Every name by slot (retired ones included), the worker count and `enabled`. A copy.
  layout shape() const;
  bool enabled() const noexcept { return enabled_; }
  unsigned workers() const noexcept { return static_cast<unsigned>(shards_.size()); }

  /// The slot of listener / cluster `name`: the one it already has, else a new one appended
  /// (exported at once). A name retain() hid stays hidden until a retain() lists it again, so
  /// a reload that fails after asking for slots changes nothing that is exported. Control
  /// thread (any thread is safe; it takes a lock and may allocate: never on a hot path).
  std::size_t listener_slot(std::string_view name);
  std::size_t cluster_slot(std::string_view name);
  /// The slot of route `route` (its label) of listener `listener`; as above.
  std::size_t route_slot(std::string_view listener, std::string_view route);

  /// After a reload: `current` holds the names of the configuration now in use (workers and
  /// enabled are ignored). Every name in it gets a slot if it had none and is exported; every
  /// other name is no longer exported, but keeps its slot and counters in case it comes back
  /// (sessions of the old configuration may still be counting). Clusters no longer exported
  /// lose their discovery probe (their source is going away).
  void retain(const layout& current);

  /// Worker w's shard (stable address). Throws std::out_of_range for w >= workers().
  worker_shard& shard(unsigned w) { return *shards_.at(w); }
  const worker_shard& shard(unsigned w) const { return *shards_.at(w); }

  /// Where per-backend series come from (set once during wiring, before the first scrape).
  void set_backends(backend_enumerator e);

  /// The listener with slot `listener` is a TCP listener: returns its shared counters (made on
  /// the first call, the same object afterwards, also across reloads), which the scrape exports
  /// as the sluice_tcp_* families. nullptr for an unknown slot. Call during wiring or reload.
  std::shared_ptr<tcp_listener_counters> tcp_listener(std::size_t listener);
  /// The listener is no longer a TCP listener (a reload changed its protocol): its sluice_tcp_*
  /// series go away and a later tcp_listener() starts from zero. Unknown slots are ignored.
  void forget_tcp_listener(std::size_t listener);
  /// The counters of a TCP listener, nullptr if `listener` is not one (any thread).
  std::shared_ptr<const tcp_listener_counters> tcp_counters(std::size_t listener) const;

  /// The cluster with slot `cluster` has a discovery source: from now on its discovery state,
  /// event age and the sluice_discovery_* families come from `probe` (which must stay callable
  /// while scrapes can happen). A later call replaces the probe (a reload made a new source);
  /// an empty `probe` removes it: do that before the source it reads is destroyed. Unknown
  /// slots are ignored.
  void set_discovery_source(std::size_t cluster, discovery_probe probe);
  /// The probe's sample, nullopt when the cluster has no source.
  std::optional<discovery_sample> discovery_source(std::size_t cluster) const;

  // Control plane: discovery state pushed by a source without a probe, and reloads. Unknown
  // cluster slots are ignored.
  void set_discovery_state(std::size_t cluster, discovery_state s) noexcept;
  void on_discovery_event(std::size_t cluster) noexcept;  ///< a watch event or a full reload
  void on_discovery_invalid_entry(std::size_t cluster) noexcept;  ///< an unusable key skipped
  discovery_state discovery(std::size_t cluster) const noexcept;
  /// Seconds since the last discovery event of the cluster; nullopt when none yet.
  std::optional<double> discovery_event_age(std::size_t cluster) const noexcept;

  /// A configuration reload was attempted. Successes bump config_version().
  void on_config_reload(bool success);
  /// 1 for the configuration loaded at start, +1 for every successful reload.
  std::uint64_t config_version() const noexcept {
    return config_version_.load(std::memory_order_relaxed);
  }

  /// For control-plane metrics other modules add with prometheus-cpp's builders; their
  /// families are exposed next to the built-in ones. Names must start with `sluice_`.
  prometheus::Registry& prometheus() noexcept { return *prom_; }

  /// Every family: the prometheus-cpp registry's and the merged shards/backends.
  std::vector<prometheus::MetricFamily> collect() const;
  /// Prometheus text exposition format (version 0.0.4) of collect().
  std::string serialize() const;

  /// Merged view of the shards (what the status page shows), summed over workers.
  struct listener_totals {
    std::uint64_t accepted = 0, active = 0, bytes_in = 0, bytes_out = 0;
    std::array<std::uint64_t, 5> responses{};
  };
  struct cluster_totals {
    std::array<std::uint64_t, 5> responses{};
    std::uint64_t connect_failures = 0, retries = 0;
    core::histogram_totals request, upstream;
  };
  struct backend_totals {
    std::array<std::uint64_t, 5> responses{};
    core::histogram_totals request, upstream;
  };
  struct route_totals {
    std::array<std::uint64_t, 5> responses{};
    core::histogram_totals request;
  };
  /// By slot; zeros for a slot that does not exist.
  listener_totals listener(std::size_t i) const;
  cluster_totals cluster(std::size_t i) const;
  route_totals route(std::size_t i) const;
  static backend_totals backend(const core::backend& b);

 private:
  class collector;
  struct discovery_slot {
    std::atomic<int> state{0};
    std::atomic<std::int64_t> last_event_ns{-1};  ///< steady clock; -1: none
    std::atomic<std::uint64_t> invalid{0};
  };
  /// Names of one kind by slot.
  template <class Key>
  struct name_table {
    std::vector<Key> names;
    std::vector<bool> exported;
    std::map<Key, std::size_t, std::less<>> slots;
  };
  /// What a scrape exports: (slot, name) of the exported names.
  struct exported_names {
    std::vector<std::pair<std::size_t, std::string>> listeners, clusters;
    std::vector<std::pair<std::size_t, route_name>> routes;
  };
  exported_names exported() const;
  template <class Key, class Find>
  std::size_t slot_of(name_table<Key>& t, const Find& key);  // names_mutex_ held
  void grow_locked();                                         // names_mutex_ held

  bool enabled_;
  std::vector<std::unique_ptr<worker_shard>> shards_;
  mutable std::mutex names_mutex_;  ///< guards the name tables; taken before sources_mutex_
  name_table<std::string> listeners_, clusters_;
  name_table<route_name> routes_;
  slot_array<discovery_slot> discovery_;  ///< by cluster slot
  mutable std::mutex sources_mutex_;  ///< guards probes_ and tcp_
  std::vector<discovery_probe> probes_;  ///< per cluster slot; empty function: none
  std::vector<std::shared_ptr<tcp_listener_counters>> tcp_;  ///< per listener slot; null: not tcp
  std::atomic<std::uint64_t> config_version_{1};
  std::shared_ptr<prometheus::Registry> prom_;
  std::unique_ptr<collector> collector_;
  std::chrono::system_clock::time_point started_;
  struct reload_metrics;
  std::unique_ptr<reload_metrics> reload_;
};

}  // namespace sluice::metrics
