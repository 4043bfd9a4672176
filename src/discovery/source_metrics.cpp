#include "sluice/discovery/source_metrics.hpp"

namespace sluice::discovery {

metrics::discovery_sample sample(const source_state& s,
                                 std::chrono::system_clock::time_point now) noexcept {
  constexpr auto r = std::memory_order_relaxed;
  metrics::discovery_sample out;
  out.connected = s.connected.load(r);
  out.revision = s.revision.load(r);
  out.skipped = s.skipped_values.load(r);
  out.updates = s.updates.load(r);
  out.disconnects = s.disconnects.load(r);
  out.full_reads = s.full_reads.load(r);
  out.endpoints = s.endpoints.load(r);
  if (out.connected)
    out.state = metrics::discovery_state::watching;
  else if (out.disconnects == 0 && s.last_contact_ms.load(r) == 0)
    out.state = metrics::discovery_state::connecting;
  else
    out.state = metrics::discovery_state::error;
  if (const auto at = s.last_event_ms.load(r); at > 0) {
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    out.last_event_age = now_ms > at ? static_cast<double>(now_ms - at) / 1e3 : 0.0;
  }
  return out;
}

metrics::discovery_probe metrics_probe(const etcd_source& source) {
  return [&source] { return sample(source.state(), std::chrono::system_clock::now()); };
}

}  // namespace sluice::discovery
