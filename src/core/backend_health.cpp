#include "sluice/core/backend.hpp"

namespace sluice::core {

const char* to_string(check_code c) noexcept {
  switch (c) {
    case check_code::none: return "none";
    case check_code::ok: return "ok";
    case check_code::connect_failed: return "connect_failed";
    case check_code::timeout: return "timeout";
    case check_code::bad_status: return "bad_status";
    case check_code::bad_body: return "bad_body";
    case check_code::protocol_error: return "protocol_error";
    case check_code::grpc_status: return "grpc_status";
    case check_code::not_serving: return "not_serving";
  }
  return "unknown";
}

const char* to_string(health_state s) noexcept {
  switch (s) {
    case health_state::draining: return "draining";
    case health_state::ejected: return "ejected";
    case health_state::unhealthy: return "unhealthy";
    case health_state::healthy: return "healthy";
  }
  return "unknown";
}

void backend::copy_health_from(const backend& other) noexcept {
  constexpr auto r = std::memory_order_relaxed;
  const backend_health& o = other.health_;
  backend_health& h = health_;
  h.checked_healthy.store(o.checked_healthy.load(r), r);
  h.ejected.store(o.ejected.load(r), r);
  h.draining.store(o.draining.load(r), r);
  h.in_service.store(o.in_service.load(r), r);
  h.consecutive_failures.store(o.consecutive_failures.load(r), r);
  h.ejections.store(o.ejections.load(r), r);
  h.ejected_until_ms.store(o.ejected_until_ms.load(r), r);
  h.last_check.store(o.last_check.load(r), r);
  h.last_check_status.store(o.last_check_status.load(r), r);
  h.last_check_ms.store(o.last_check_ms.load(r), r);
  h.checks_passed.store(o.checks_passed.load(r), r);
  h.checks_failed.store(o.checks_failed.load(r), r);
  h.health_flips.store(o.health_flips.load(r), r);
  h.ramp_since_ns.store(o.ramp_since_ns.load(r), r);
}

}  // namespace sluice::core
