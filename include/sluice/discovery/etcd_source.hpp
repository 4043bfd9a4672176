// A cluster's endpoints from etcd: read the prefix, then watch it, resuming by revision.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/pool/cluster.hpp"

namespace boost::asio {
class io_context;
}

namespace sluice::discovery {

/// Written on the control thread, readable from any thread (metrics, admin /status).
struct source_state {
  std::atomic<bool> connected{false};            ///< a watch is established right now
  std::atomic<std::int64_t> revision{0};         ///< etcd revision the set reflects
  std::atomic<std::int64_t> last_event_ms{0};    ///< Unix ms of the last change seen in etcd; 0: none
  std::atomic<std::int64_t> last_contact_ms{0};  ///< Unix ms of the last answer from etcd; 0: none
  std::atomic<std::uint64_t> skipped_values{0};  ///< unusable values seen (each time one arrives)
  std::atomic<std::uint64_t> updates{0};         ///< whole sets delivered to the callback
  std::atomic<std::uint64_t> disconnects{0};     ///< sessions lost or failed
  std::atomic<std::uint64_t> full_reads{0};      ///< prefix reads (start, compaction, cancel)
  std::atomic<std::uint32_t> endpoints{0};       ///< size of the last delivered set
};

/// Receives the WHOLE endpoint set (the cluster's static `endpoints` first, then the
/// discovered ones not already among them), on the control thread.
using update_handler = std::function<void(std::vector<pool::endpoint>)>;

/// Thread-safety: start() and stop() run on the control io_context's thread (stop() from
/// another thread is posted there); state() from any thread.
class etcd_source {
 public:
  virtual ~etcd_source() = default;
  /// Starts reading and watching. The first set is delivered after the first successful read;
  /// if no etcd endpoint answers in the first round and `persist` names a readable file, its
  /// set is delivered instead. While etcd is unreachable the last delivered set stays (nothing
  /// is delivered), so losing etcd never empties a cluster.
  virtual void start() = 0;
  /// Closes the connection and cancels timers; the callback is not called after stop().
  /// Required before the control io_context can run out of work (e.g. in the drain handler).
  virtual void stop() = 0;
  virtual const source_state& state() const noexcept = 0;
};

/// nullptr with *error when the cluster has no etcd discovery, a static endpoint does not
/// resolve, or a TLS file cannot be loaded.
std::unique_ptr<etcd_source> make_etcd_source(boost::asio::io_context& control,
                                              const config::cluster& cluster,
                                              update_handler on_update, std::string* error);

}  // namespace sluice::discovery
