// RAII hold on a backend for one request or connection: active count up on acquire, down on release.
#pragma once

#include <utility>

#include "sluice/core/backend.hpp"

namespace sluice::pool {

/// success, connect_failure, reset, timeout, http_5xx (defined in core for passive health).
using outcome = core::outcome;

class lease {
 public:
  lease() = default;
  explicit lease(core::backend& b) noexcept : b_(&b) { b_->add_active(1); }
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  lease(lease&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  lease& operator=(lease&& o) noexcept {
    if (this != &o) {
      release();
      b_ = std::exchange(o.b_, nullptr);
    }
    return *this;
  }
  ~lease() { release(); }

  core::backend* get() const noexcept { return b_; }
  explicit operator bool() const noexcept { return b_ != nullptr; }

  /// Records how the request went on this backend: counters, and passive health (a success
  /// clears the backend's failure streak; a failure may lead the control plane to eject it).
  /// Cheap and lock-free in the common case; safe on any worker thread.
  void report(outcome o) noexcept {
    if (!b_) return;
    if (o == outcome::success) {
      b_->note_success();
      return;
    }
    auto& s = b_->stats();
    switch (o) {
      case outcome::success: break;
      case outcome::connect_failure: s.connect_failures.fetch_add(1, std::memory_order_relaxed); break;
      case outcome::http_5xx: s.responses_5xx.fetch_add(1, std::memory_order_relaxed); break;
      case outcome::reset:
      case outcome::timeout: s.failures.fetch_add(1, std::memory_order_relaxed); break;
    }
    b_->note_failure(o);
  }

  void release() noexcept {
    if (b_) {
      b_->add_active(-1);
      b_ = nullptr;
    }
  }

 private:
  core::backend* b_ = nullptr;
};

}  // namespace sluice::pool
