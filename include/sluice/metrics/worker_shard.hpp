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

/// "No slot": a request that matched no route, a session without a listener slot.
inline constexpr std::size_t no_slot = static_cast<std::size_t>(-1);

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

/// Per route of an http listener, per worker.
struct alignas(64) route_counters {
  std::array<std::atomic<std::uint64_t>, 5> responses{};  ///< by status class
  core::latency_histogram request;  ///< whole request as the downstream saw it
};

/// Counters by slot that never move once handed out, for one writer thread and any number of
/// readers while one control thread adds slots. A fixed table of chunk pointers; chunks of 16
/// are allocated on demand and freed only by the destructor, so a slot's address is stable for
/// the array's lifetime. At most `max_slots` slots; grow() stops there.
///
/// Publication: grow() stores the new chunk pointers, then the new size with release; size()
/// and find() load the size with acquire, so a slot below size() always has its chunk visible.
template <class T>
class slot_array {
 public:
  static constexpr std::size_t chunk_bits = 4;
  static constexpr std::size_t chunk_size = std::size_t{1} << chunk_bits;
  static constexpr std::size_t max_chunks = 1024;
  static constexpr std::size_t max_slots = chunk_size * max_chunks;  ///< 16384

  slot_array() = default;
  explicit slot_array(std::size_t n) { grow(n); }
  slot_array(const slot_array&) = delete;
  slot_array& operator=(const slot_array&) = delete;
  ~slot_array() {
    for (auto& c : chunks_) delete[] c.load(std::memory_order_relaxed);
  }

  /// Slots [0, n) exist afterwards (n capped at max_slots); never shrinks. One thread at a
  /// time (the control thread); concurrent with readers and with writers of existing slots.
  void grow(std::size_t n) {
    if (n > max_slots) n = max_slots;
    const std::size_t have = size_.load(std::memory_order_relaxed);
    if (n <= have) return;
    for (std::size_t c = (have + chunk_size - 1) >> chunk_bits; c < ((n + chunk_size - 1) >> chunk_bits); ++c)
      if (!chunks_[c].load(std::memory_order_relaxed))
        chunks_[c].store(new T[chunk_size], std::memory_order_release);
    size_.store(n, std::memory_order_release);
  }

  std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }

  /// The slot's counters, nullptr past size() (so -1 and stale indices are harmless).
  T* find(std::size_t slot) const noexcept {
    if (slot >= size_.load(std::memory_order_acquire)) return nullptr;
    return chunks_[slot >> chunk_bits].load(std::memory_order_relaxed) + (slot & (chunk_size - 1));
  }
  /// Precondition: slot < size().
  T& operator[](std::size_t slot) const noexcept {
    return chunks_[slot >> chunk_bits].load(std::memory_order_acquire)[slot & (chunk_size - 1)];
  }

 private:
  std::array<std::atomic<T*>, max_chunks> chunks_{};
  std::atomic<std::size_t> size_{0};
};

/// The hot-path API the sessions call. One shard per worker, owned by the metrics registry;
/// its address is stable. Thread-safety: every on_*() must be called from the shard's own
/// worker thread (single-writer counters, no locks, no read-modify-write instructions); the
/// read accessors may be used from any thread; grow() from one control thread at a time (the
/// registry calls it when it hands out a new slot), concurrently with the worker's on_*().
/// Slots that do not exist (yet) are ignored, never UB. A disabled shard (metrics off in the
/// config) returns at once from every on_*().
class worker_shard {
 public:
  worker_shard(unsigned worker, std::size_t listeners, std::size_t clusters, bool enabled,
               std::size_t routes = 0);

  unsigned worker() const noexcept { return worker_; }
  bool enabled() const noexcept { return enabled_; }

  /// Makes room for at least this many slots of each kind (never shrinks; existing counters
  /// stay where they are). Control thread only.
  void grow(std::size_t listeners, std::size_t clusters, std::size_t routes);

  /// A downstream connection was accepted on / closed from the listener with slot `listener`.
  void on_connection_open(std::size_t listener) noexcept {
    if (!enabled_) return;
    if (auto* l = listeners_.find(listener)) core::bump(l->accepted);
  }
  void on_connection_close(std::size_t listener) noexcept {
    if (!enabled_) return;
    if (auto* l = listeners_.find(listener)) core::bump(l->closed);
  }

  /// One request finished (response sent, or the exchange given up).
  /// - `listener`: the listener's slot;
  /// - `cluster`: the cluster's slot, -1 when no cluster served it (direct response, no
  ///   route, bad request);
  /// - `backend`: the backend that answered, nullptr when none (no backend, connect failed);
  /// - `status`: the status sent downstream, 0 when none was sent;
  /// - `upstream`: upstream time of the attempt that answered (connect or reuse, send,
  ///   receive); zero or negative when there was none (then no upstream sample is recorded);
  /// - `bytes_in` / `bytes_out`: bytes received from / sent to the downstream for it;
  /// - `route`: the matched route's slot (registry::route_slot), no_slot when none matched.
  void on_request(std::size_t listener, int cluster, core::backend* backend, unsigned status,
                  std::chrono::nanoseconds duration, std::chrono::nanoseconds upstream,
                  std::uint64_t bytes_in, std::uint64_t bytes_out,
                  std::size_t route = no_slot) noexcept {
    if (!enabled_) return;
    const int cls = status_class(status);
    // The whole request lands in the same bucket of every histogram: search it once.
    const std::uint64_t ns = duration.count() > 0 ? static_cast<std::uint64_t>(duration.count()) : 0;
    const std::size_t bucket = core::latency_bucket(ns);
    auto record = [&](core::latency_histogram& h) {
      core::bump(h.buckets[bucket]);
      core::bump(h.sum_ns, ns);
    };
    if (auto* l = listeners_.find(listener)) {
      if (cls >= 0) core::bump(l->responses[static_cast<std::size_t>(cls)]);
      core::bump(l->bytes_in, bytes_in);
      core::bump(l->bytes_out, bytes_out);
    }
    // -1 converts to a huge slot: find() ignores it.
    if (auto* c = clusters_.find(static_cast<std::size_t>(cluster))) {
      if (cls >= 0) core::bump(c->responses[static_cast<std::size_t>(cls)]);
      record(c->request);
      if (upstream.count() > 0) c->upstream.record(upstream);
    }
    if (auto* r = routes_.find(route)) {
      if (cls >= 0) core::bump(r->responses[static_cast<std::size_t>(cls)]);
      record(r->request);
    }
    if (backend) {
      if (auto* b = backend->worker_stats(worker_)) {
        if (cls >= 0) core::bump(b->responses[static_cast<std::size_t>(cls)]);
        record(b->request);
        if (upstream.count() > 0) b->upstream.record(upstream);
      }
    }
  }

  /// Bytes relayed from / to the downstream of `listener` outside a request (TCP listeners
  /// count once per read or splice call, not per request).
  void on_received(std::size_t listener, std::uint64_t n) noexcept {
    if (!enabled_) return;
    if (auto* l = listeners_.find(listener)) core::bump(l->bytes_in, n);
  }
  void on_sent(std::size_t listener, std::uint64_t n) noexcept {
    if (!enabled_) return;
    if (auto* l = listeners_.find(listener)) core::bump(l->bytes_out, n);
  }

  /// A TCP connect to one of `cluster`'s backends failed (the backend's own counter is kept by
  /// `pool::lease::report`).
  void on_connect_failure(int cluster) noexcept {
    if (!enabled_) return;
    if (auto* c = clusters_.find(static_cast<std::size_t>(cluster))) core::bump(c->connect_failures);
  }
  /// A request to `cluster` is tried again on another backend.
  void on_retry(int cluster) noexcept {
    if (!enabled_) return;
    if (auto* c = clusters_.find(static_cast<std::size_t>(cluster))) core::bump(c->retries);
  }

  // Read side (any thread). The references are valid for i below the matching count.
  std::size_t listeners() const noexcept { return listeners_.size(); }
  std::size_t clusters() const noexcept { return clusters_.size(); }
  std::size_t routes() const noexcept { return routes_.size(); }
  const listener_counters& listener(std::size_t i) const noexcept { return listeners_[i]; }
  const cluster_counters& cluster(std::size_t i) const noexcept { return clusters_[i]; }
  const route_counters& route(std::size_t i) const noexcept { return routes_[i]; }

 private:
  unsigned worker_;
  bool enabled_;
  // Each chunk is its own allocation and its elements are cache-line aligned, so nothing a
  // worker writes shares a line with another worker's counters.
  slot_array<listener_counters> listeners_;
  slot_array<cluster_counters> clusters_;
  slot_array<route_counters> routes_;
};

}  // namespace sluice::metrics
