#include "sluice/discovery/key_table.hpp"

#include <set>

#include "sluice/core/address.hpp"
#include "sluice/discovery/registration.hpp"

namespace sluice::discovery {

bool key_table::put(const etcd::key_value& kv, std::map<std::string, entry>& into) {
  std::string error;
  std::optional<core::address> addr;
  auto r = parse_registration(kv.value, &error);
  if (r) {
    addr = core::resolve(r->address, &error);
    if (!addr) error = "address '" + r->address + "': " + error;
  }
  if (!r || !addr) {
    ++skipped_;
    into.erase(kv.key);
    if (on_skip_) on_skip_(kv.key, error);
    return false;
  }
  into[kv.key] = entry{pool::endpoint{std::move(*addr), r->weight}, kv.mod_revision};
  return true;
}

bool key_table::reset(const std::vector<etcd::key_value>& kvs, std::int64_t revision) {
  const auto before = endpoints();
  std::map<std::string, entry> fresh;
  for (const auto& kv : kvs) put(kv, fresh);
  entries_ = std::move(fresh);
  revision_ = revision;
  return !same_endpoints(before, endpoints());
}

bool key_table::apply(const etcd::watch_message& m) {
  if (m.events.empty()) return false;
  const auto before = endpoints();
  for (const auto& ev : m.events) {
    if (ev.kv.mod_revision != 0 && ev.kv.mod_revision <= revision_) continue;
    if (ev.type == etcd::watch_event::kind::del)
      entries_.erase(ev.kv.key);
    else
      put(ev.kv, entries_);
    if (ev.kv.mod_revision > revision_) revision_ = ev.kv.mod_revision;
  }
  return !same_endpoints(before, endpoints());
}

std::vector<pool::endpoint> key_table::endpoints() const {
  std::vector<pool::endpoint> out;
  out.reserve(entries_.size());
  std::set<std::string> seen;
  for (const auto& [key, e] : entries_)
    if (seen.insert(e.endpoint.address.numeric()).second) out.push_back(e.endpoint);
  return out;
}

bool same_endpoints(const std::vector<pool::endpoint>& a, const std::vector<pool::endpoint>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].weight != b[i].weight || a[i].address.text != b[i].address.text ||
        a[i].address.numeric() != b[i].address.numeric())
      return false;
  }
  return true;
}

std::vector<pool::endpoint> merge_endpoints(std::vector<pool::endpoint> first,
                                            const std::vector<pool::endpoint>& second) {
  std::set<std::string> seen;
  for (const auto& e : first) seen.insert(e.address.numeric());
  for (const auto& e : second)
    if (seen.insert(e.address.numeric()).second) first.push_back(e);
  return first;
}

}  // namespace sluice::discovery
