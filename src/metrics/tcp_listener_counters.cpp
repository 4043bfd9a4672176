#include "sluice/metrics/tcp_listener_counters.hpp"

namespace sluice::metrics {

const char* to_string(tcp_close_reason r) noexcept {
  switch (r) {
    case tcp_close_reason::refused: return "refused";
    case tcp_close_reason::no_backend: return "no_backend";
    case tcp_close_reason::bad_preamble: return "bad_preamble";
    case tcp_close_reason::idle_timeout: return "idle_timeout";
    case tcp_close_reason::lifetime_expired: return "lifetime_expired";
    case tcp_close_reason::reset: return "reset";
  }
  return "other";
}

}  // namespace sluice::metrics
