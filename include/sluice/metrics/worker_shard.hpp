// One worker's metric counters: written only by its worker thread, merged at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "sluice/core/backend.hpp"
#include "sluice/core/histogram.hpp"

namespace sluice::metrics {

/// Index of a status code's class: 0 for 1xx ... 4 for 5xx; -1 for anything outside 100-599
/// (e.g. 0: no response was sent because the downstream went away).
constexpr int status_class(unsigned status) noexcept {
  return status >= 100 && status <= 599 ? static_cast<int>(status / 100) - 1 : -1;
}

/// Per listener, per worker. Aligned: a worker's counters never share a cache line with
/// another worker's.
struct alignas(64) listener_counters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> closed{0};  ///< active = accepted - closed (summed over workers)
  std::atomic<std::uint64_t> bytes_in{0};   ///< received from the downstream
  std::atomic<std::uint64_t> bytes_out{0};  ///< sent to the downstream
  std::array<std::atomic<std::uint64_t>, 5> responses{};  ///< by status class
};

/// Per cluster, per worker.
struct alignas(64) cluster_counters {
  std::array<std::atomic<std::uint64_t>, 5> responses{};  ///< by status class
  std::atomic<std::uint64_t> connect_failures{0};
  std::atomic<std::uint64_t> retries{0};
  core::latency_histogram request;   ///< whole request as the downstream saw it
  core::latency_histogram upstream;  ///< upstream time of the answering attempt
};

/// The hot-path API the sessions call. One shard per worker, owned by the metrics registry;
/// its address is stable. Thread-safety: every on_*() must be called from the shard's own
/// worker thread (single-writer counters, no locks, no read-modify-write instructions); the
/// read accessors may be used from any thread. Out-of-range indices are ignored, never UB.
/// A disabled shard (metrics off in the config) returns at once from every on_*().
class worker_shard {
 public:
  worker_shard(unsigned worker, std::size_t listeners, std::size_t clusters, bool enabled);

  unsigned worker() const noexcept { return worker_; }
  bool enabled() const noexcept { return enabled_; }

  /// A downstream connection was accepted on / closed from listener `listener` (index into
  /// the config's listeners).
  void on_connection_open(std::size_t listener) noexcept {
    if (enabled_ && listener < listeners_n_) core::bump(listeners_[listener].accepted);
  }
  void on_connection_close(std::size_t listener) noexcept {
    if (enabled_ && listener < listeners_n_) core::bump(listeners_[listener].closed);
  }

  /// One request finished (response sent, or the exchange given up).
  /// - `cluster`: index into the config's clusters, -1 when no cluster served it (direct
  ///   response, no route, bad request);
  /// - `backend`: the backend that answered, nullptr when none (no backend, connect failed);
  /// - `status`: the status sent downstream, 0 when none was sent;
  /// - `upstream`: upstream time of the attempt that answered (connect or reuse, send,
  ///   receive); zero or negative when there was none (then no upstream sample is recorded);
  /// - `bytes_in` / `bytes_out`: bytes received from / sent to the downstream for it.
  void on_request(std::size_t listener, int cluster, core::backend* backend, unsigned status,
                  std::chrono::nanoseconds duration, std::chrono::nanoseconds upstream,
                  std::uint64_t bytes_in, std::uint64_t bytes_out) noexcept {
    if (!enabled_) return;
    const int cls = status_class(status);
    if (listener < listeners_n_) {
      auto& l = listeners_[listener];
      if (cls >= 0) core::bump(l.responses[static_cast<std::size_t>(cls)]);
      core::bump(l.bytes_in, bytes_in);
      core::bump(l.bytes_out, bytes_out);
    }
    if (cluster >= 0 && static_cast<std::size_t>(cluster) < clusters_n_) {
      auto& c = clusters_[static_cast<std::size_t>(cluster)];
      if (cls >= 0) core::bump(c.responses[static_cast<std::size_t>(cls)]);
      c.request.record(duration);
      if (upstream.count() > 0) c.upstream.record(upstream);
    }
    if (backend) {
      if (auto* b = backend->worker_stats(worker_)) {
        if (cls >= 0) core::bump(b->responses[static_cast<std::size_t>(cls)]);
        b->request.record(duration);
        if (upstream.count() > 0) b->upstream.record(upstream);
      }
    }
  }

  /// Bytes relayed from / to the downstream of `listener` outside a request (TCP listeners
  /// count once per read or splice call, not per request).
  void on_received(std::size_t listener, std::uint64_t n) noexcept {
    if (enabled_ && listener < listeners_n_) core::bump(listeners_[listener].bytes_in, n);
  }
  void on_sent(std::size_t listener, std::uint64_t n) noexcept {
    if (enabled_ && listener < listeners_n_) core::bump(listeners_[listener].bytes_out, n);
  }

  /// A TCP connect to one of `cluster`'s backends failed (the backend's own counter is kept by
  /// `pool::lease::report`).
  void on_connect_failure(int cluster) noexcept {
    if (enabled_ && cluster >= 0 && static_cast<std::size_t>(cluster) < clusters_n_)
      core::bump(clusters_[static_cast<std::size_t>(cluster)].connect_failures);
  }
  /// A request to `cluster` is tried again on another backend.
  void on_retry(int cluster) noexcept {
    if (enabled_ && cluster >= 0 && static_cast<std::size_t>(cluster) < clusters_n_)
      core::bump(clusters_[static_cast<std::size_t>(cluster)].retries);
  }

  // Read side (any thread).
  std::size_t listeners() const noexcept { return listeners_n_; }
  std::size_t clusters() const noexcept { return clusters_n_; }
  const listener_counters& listener(std::size_t i) const noexcept { return listeners_[i]; }
  const cluster_counters& cluster(std::size_t i) const noexcept { return clusters_[i]; }

 private:
  unsigned worker_;
  bool enabled_;
  std::size_t listeners_n_, clusters_n_;
  std::unique_ptr<listener_counters[]> listeners_;
  std::unique_ptr<cluster_counters[]> clusters_;
};

}  // namespace sluice::metrics
