// Picks a target for a TLS server_name: exact names first, then the longest "*.suffix" match.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::l4 {

/// Immutable after construction; route() is safe to call from any thread and never allocates.
class sni_router {
 public:
  struct entry {
    std::string pattern;  ///< "db.example.com" or "*.example.com" (lowercase)
    int target = -1;
  };
  /// `fallback` is returned when nothing matches (and for an empty name); -1 means none.
  sni_router(const std::vector<entry>& entries, int fallback);

  /// `name` must already be lowercase without a trailing dot (as parse_client_hello gives it).
  /// "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
  int route(std::string_view name) const noexcept;
  int fallback() const noexcept { return fallback_; }

 private:
  std::vector<entry> exact_;
  std::vector<entry> wildcard_;  ///< pattern stored as ".example.com", longest first
  int fallback_;
};

}  // namespace sluice::l4
