#include "sluice/pool/cluster.hpp"

#include <unordered_map>

#include "sluice/pool/slow_start.hpp"

namespace sluice::pool {

// Shared by the cluster and every backend it made: a backend may outlive its cluster (a lease
// or an old snapshot holds it), so the feed is reference-counted rather than owned.
struct cluster::failure_feed final : core::backend_observer {
  failure_feed(std::uint8_t m, std::uint32_t t) : mask(m), threshold(t) {}

  void on_failure(core::backend& b, core::outcome o) noexcept override {
    if (!(mask & core::outcome_bit(o))) return;
    const std::uint32_t n =
        b.health().consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
    // Exactly one worker sees each multiple of the threshold, so the control plane gets one
    // post per `threshold` failures, not one per failure; a backend the ejection cap kept in
    // gets another chance at the next multiple.
    if (n < threshold || (n - threshold) % threshold != 0) return;
    core::backend_ptr self = b.weak_from_this().lock();
    if (!self) return;  // not owned by a shared_ptr (tests): nothing to hand over
    std::lock_guard lock(mutex);
    if (!handler) return;
    try {
      handler(std::move(self));
    } catch (...) {
      // Passive health is best effort: a failed hand-over must not take the worker down.
    }
  }

  const std::uint8_t mask;
  const std::uint32_t threshold;
  std::mutex mutex;  // taken only when a streak reaches the threshold, and by on_failure_streak
  failure_streak_handler handler;
};

cluster::cluster(config::cluster cfg, unsigned workers, const cluster* predecessor)
    : cfg_(std::move(cfg)), workers_(std::max(workers, 1u)) {
  caches_.reserve(workers_);
  for (unsigned w = 0; w < workers_; ++w) caches_.emplace_back(*this);
  if (cfg_.outlier.enabled)
    feed_ = std::make_shared<failure_feed>(cfg_.outlier.count_mask,
                                           std::max<std::uint32_t>(cfg_.outlier.consecutive, 1));
  std::vector<core::backend_ptr> inherited;
  if (predecessor) {
    inherited = predecessor->current()->backends;
    for (auto& b : inherited) b->set_observer(feed_);  // null without `outlier`: detaches
  }
  publish(std::move(inherited), clock::now());
}

cluster::~cluster() = default;

void cluster::update(const std::vector<endpoint>& endpoints, clock::time_point now) {
  {
    std::lock_guard serial(update_mutex_);
    std::vector<core::backend_ptr> next;
    next.reserve(endpoints.size());
    {
      std::lock_guard lock(mutex_);
      // Keep the backend objects (counters, health) of endpoints we already know.
      std::unordered_multimap<std::string, core::backend_ptr> known;
      for (const auto& b : current_->backends) known.emplace(b->name(), b);
      for (const auto& e : endpoints) {
        auto range = known.equal_range(e.address.text);
        auto same = range.first;
        while (same != range.second && same->second->weight() != e.weight) ++same;
        if (same != range.second) {
          next.push_back(same->second);
          known.erase(same);  // a duplicate address in `endpoints` gets its own object
          continue;
        }
        auto b = std::make_shared<core::backend>(e.address, e.weight);
        if (range.first != range.second) {  // same address, new weight: health carries over
          b->copy_health_from(*range.first->second);
          known.erase(range.first);
        }
        if (feed_) b->set_observer(feed_);
        next.push_back(std::move(b));
      }
    }
    publish(std::move(next), now);
  }
  std::vector<std::function<void()>> watchers;
  {
    std::lock_guard lock(watch_mutex_);
    for (const auto& [id, f] : watchers_) watchers.push_back(f);
  }
  for (const auto& f : watchers) f();
}

void cluster::refresh(clock::time_point now) {
  std::lock_guard serial(update_mutex_);
  publish(current()->backends, now);
}

bool cluster::set_draining(const std::string& address, bool draining) {
  std::lock_guard serial(update_mutex_);
  auto snap = current();
  bool found = false, changed = false;
  for (const auto& b : snap->backends) {
    if (b->name() != address) continue;
    found = true;
    if (b->health().draining.exchange(draining, std::memory_order_relaxed) != draining)
      changed = true;
  }
  if (changed) publish(snap->backends, clock::now());
  return found;
}

std::uint64_t cluster::watch(std::function<void()> f) {
  std::lock_guard lock(watch_mutex_);
  const std::uint64_t id = next_watch_++;
  watchers_.emplace_back(id, std::move(f));
  return id;
}

void cluster::unwatch(std::uint64_t id) {
  std::lock_guard lock(watch_mutex_);
  std::erase_if(watchers_, [id](const auto& w) { return w.first == id; });
}

void cluster::on_failure_streak(failure_streak_handler f) {
  if (!feed_) return;  // no `outlier` section: failures are only counted
  std::lock_guard lock(feed_->mutex);
  feed_->handler = std::move(f);
}

// Called with update_mutex_ held (or from the constructor).
void cluster::publish(std::vector<core::backend_ptr> backends, clock::time_point now) {
  constexpr auto relaxed = std::memory_order_relaxed;
  const auto window = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.slow_start);
  const std::int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();

  // Slow start applies when a backend (re)enters service next to others already serving: a
  // lone backend, or the first membership of a fresh cluster, takes its full weight at once.
  bool others_serving = false;
  for (const auto& b : backends)
    if (b->health().in_service.load(relaxed) && b->eligible()) others_serving = true;

  auto snap = std::make_shared<snapshot>();
  snap->backends = std::move(backends);
  bool any_ramping = false;
  for (const auto& b : snap->backends) {
    auto& h = b->health();
    const bool eligible = b->eligible();
    const bool was = h.in_service.exchange(eligible, relaxed);
    if (!eligible) {
      h.ramp_since_ns.store(0, relaxed);
      continue;
    }
    if (!was && window.count() > 0 && others_serving && now_ns != 0)
      h.ramp_since_ns.store(now_ns, relaxed);
    const std::int64_t since = h.ramp_since_ns.load(relaxed);
    if (since != 0 && now_ns - since >= window.count()) h.ramp_since_ns.store(0, relaxed);
    if (h.ramp_since_ns.load(relaxed) != 0) any_ramping = true;
    snap->ready.push_back(b);
  }

  if (snap->ready.empty() && !snap->backends.empty()) {
    snap->panic = true;
    if (cfg_.panic == config::panic_mode::spread)
      for (const auto& b : snap->backends)
        if (!b->health().draining.load(relaxed)) snap->ready.push_back(b);
  }

  if (any_ramping) {
    snap->weights.reserve(snap->ready.size());
    for (const auto& b : snap->ready) {
      const std::int64_t since = b->health().ramp_since_ns.load(relaxed);
      const auto elapsed = since == 0 ? window : std::chrono::nanoseconds(now_ns - since);
      snap->weights.push_back(slow_start_weight(b->weight(), elapsed, window));
    }
  }
  snap->policy = balance::make_policy(cfg_.policy, snap->ready, snap->weights);
  ramping_.store(any_ramping, std::memory_order_release);

  std::lock_guard lock(mutex_);
  snap->version = version_.load(relaxed) + 1;
  current_ = std::move(snap);
  version_.store(current_->version, std::memory_order_release);
}

std::shared_ptr<const snapshot> cluster::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

}  // namespace sluice::pool
