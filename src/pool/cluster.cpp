#include "sluice/pool/cluster.hpp"

#include <unordered_map>

namespace sluice::pool {

cluster::cluster(config::cluster cfg) : cfg_(std::move(cfg)) { publish({}); }

void cluster::update(const std::vector<endpoint>& endpoints) {
  std::vector<core::backend_ptr> next;
  next.reserve(endpoints.size());
  {
    std::lock_guard lock(mutex_);
    // Keep the backend objects (and their counters) of endpoints we already know.
    std::unordered_map<std::string, core::backend_ptr> known;
    for (const auto& b : current_->backends) known.emplace(b->name(), b);
    for (const auto& e : endpoints) {
      auto it = known.find(e.address.text);
      if (it != known.end() && it->second->weight() == e.weight) {
        next.push_back(it->second);
        known.erase(it);  // a duplicate address in `endpoints` gets its own object
      } else {
        next.push_back(std::make_shared<core::backend>(e.address, e.weight));
      }
    }
  }
  publish(std::move(next));
}

void cluster::publish(std::vector<core::backend_ptr> backends) {
  auto snap = std::make_shared<snapshot>();
  snap->backends = std::move(backends);
  snap->ready = snap->backends;  // health filtering lands with the health module
  snap->policy = balance::make_policy(cfg_.policy, snap->ready);
  std::lock_guard lock(mutex_);
  snap->version = version_.load(std::memory_order_relaxed) + 1;
  current_ = std::move(snap);
  version_.store(current_->version, std::memory_order_release);
}

std::shared_ptr<const snapshot> cluster::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

}  // namespace sluice::pool
