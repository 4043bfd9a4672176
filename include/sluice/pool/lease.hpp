// RAII hold on a backend for one request or connection: active count up on acquire, down on release.
#pragma once

#include <utility>

#include "sluice/core/backend.hpp"

namespace sluice::pool {

enum class outcome { success, connect_failure, reset, timeout, http_5xx };

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

  /// Records how the request went on this backend (feeds counters; passive health later).
  void report(outcome o) noexcept {
    if (!b_) return;
    auto& s = b_->stats();
    switch (o) {
      case outcome::success: break;
      case outcome::connect_failure: s.connect_failures.fetch_add(1, std::memory_order_relaxed); break;
      case outcome::http_5xx: s.responses_5xx.fetch_add(1, std::memory_order_relaxed); break;
      case outcome::reset:
      case outcome::timeout: s.failures.fetch_add(1, std::memory_order_relaxed); break;
    }
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
