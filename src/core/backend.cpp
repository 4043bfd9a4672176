#include "sluice/core/backend.hpp"

namespace sluice::core {

backend::~backend() {
  for (auto& slot : per_worker_) delete slot.load(std::memory_order_acquire);
}

backend_worker_stats* backend::make_worker_stats(unsigned worker) {
  auto* p = new backend_worker_stats();
  // Release: a scrape that sees the pointer sees the zeroed block behind it.
  per_worker_[worker].store(p, std::memory_order_release);
  return p;
}

}  // namespace sluice::core
