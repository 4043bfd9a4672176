#include "sluice/http/router.hpp"

#include <algorithm>

namespace sluice::http {

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

// `pattern` is already lower case.
bool iequals_lower(std::string_view text, std::string_view pattern) noexcept {
  if (text.size() != pattern.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i)
    if (lower(text[i]) != pattern[i]) return false;
  return true;
}

}  // namespace

std::string_view host_without_port(std::string_view host) noexcept {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close != std::string_view::npos) return host.substr(0, close + 1);
    return host;
  }
  auto colon = host.rfind(':');
  if (colon != std::string_view::npos) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

router::router(const std::vector<config::route>& routes) {
  entries_.reserve(routes.size());
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const auto& m = routes[i].match;
    entry e{host_kind::any, {}, m.path_prefix, static_cast<int>(i)};
    std::string_view h = m.host;
    if (!h.empty() && h.back() == '.') h.remove_suffix(1);
    if (h.empty() || h == "*") {
      e.kind = host_kind::any;
    } else if (h.size() > 2 && h.substr(0, 2) == "*.") {
      e.kind = host_kind::wildcard;
      e.host = to_lower(h.substr(1));  // keep the dot: ".example.com"
    } else {
      e.kind = host_kind::exact;
      e.host = to_lower(host_without_port(h));
    }
    entries_.push_back(std::move(e));
  }
  std::stable_sort(entries_.begin(), entries_.end(), [](const entry& a, const entry& b) {
    if (a.kind != b.kind) return a.kind < b.kind;
    if (a.kind == host_kind::wildcard && a.host.size() != b.host.size())
      return a.host.size() > b.host.size();
    if (a.prefix.size() != b.prefix.size()) return a.prefix.size() > b.prefix.size();
    return a.index < b.index;
  });
}

int router::match(std::string_view host, std::string_view path) const noexcept {
  host = host_without_port(host);
  for (const entry& e : entries_) {
    switch (e.kind) {
      case host_kind::exact:
        if (!iequals_lower(host, e.host)) continue;
        break;
      case host_kind::wildcard:
        // ".example.com" needs at least one character before it.
        if (host.size() <= e.host.size() ||
            !iequals_lower(host.substr(host.size() - e.host.size()), e.host))
          continue;
        break;
      case host_kind::any: break;
    }
    if (path.substr(0, e.prefix.size()) == e.prefix) return e.index;
  }
  return -1;
}

}  // namespace sluice::http
