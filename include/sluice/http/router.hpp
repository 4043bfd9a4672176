// Request routing: picks a listener route from the request's Host and path (no I/O, no Asio).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::http {

/// Immutable once built; match() is safe to call from any number of threads at once.
///
/// A route host is exact ("example.com"), a wildcard ("*.example.com": matches
/// "a.example.com" and "a.b.example.com", not "example.com" itself) or empty (any host).
/// Host comparison ignores case, the port and one trailing dot. Path prefixes compare bytes
/// exactly (case-sensitive).
///
/// Precedence, like nginx's server_name then location: exact host, then wildcard hosts (longest
/// suffix first), then any-host routes; within a host class the longest path prefix wins, and
/// ties go to the route written first. When no route of the most specific matching host has a
/// matching prefix, less specific hosts are tried.
class router {
 public:
  explicit router(const std::vector<config::route>& routes);

  /// Index into the `routes` given at construction, or -1 when nothing matches.
  /// `host` is the Host header value as received (may carry ":port"); `path` is the request
  /// target's path (query string already removed, or not: prefixes are compared as bytes).
  int match(std::string_view host, std::string_view path) const noexcept;

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  enum class host_kind { exact = 0, wildcard = 1, any = 2 };
  struct entry {
    host_kind kind;
    std::string host;  ///< lower case; for wildcards the suffix with its dot: ".example.com"
    std::string prefix;
    int index;
  };
  std::vector<entry> entries_;  // in precedence order: the first match wins
};

/// The host part of a Host header value: port and one trailing dot removed, brackets of an IPv6
/// literal kept ("[::1]:80" → "[::1]"). Case is left as is.
std::string_view host_without_port(std::string_view host) noexcept;

}  // namespace sluice::http
