#include "sluice/l4/sni_router.hpp"

#include <algorithm>

namespace sluice::l4 {

sni_router::sni_router(const std::vector<entry>& entries, int fallback) : fallback_(fallback) {
  for (const auto& e : entries) {
    if (e.pattern.size() > 2 && e.pattern.starts_with("*."))
      wildcard_.push_back({e.pattern.substr(1), e.target});
    else
      exact_.push_back(e);
  }
  std::stable_sort(wildcard_.begin(), wildcard_.end(), [](const entry& a, const entry& b) {
    return a.pattern.size() > b.pattern.size();
  });
}

int sni_router::route(std::string_view name) const noexcept {
  if (name.empty()) return fallback_;
  for (const auto& e : exact_)
    if (e.pattern == name) return e.target;
  for (const auto& e : wildcard_)
    if (name.size() > e.pattern.size() && name.ends_with(e.pattern)) return e.target;
  return fallback_;
}

}  // namespace sluice::l4
