// The keys under a discovery prefix and the endpoint set they make. Pure state, no I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sluice/discovery/etcd_protocol.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::discovery {

/// Mirrors etcd's view of one prefix. A full read replaces everything (`reset`), a watch
/// message changes some keys (`apply`); either way the caller then reads the WHOLE set with
/// `endpoints()`. Values are parsed (`parse_registration`) and resolved (`core::resolve`, which
/// may call getaddrinfo for a host name) when they arrive; an unusable value removes its key
/// from the set, is counted and reported through `on_skip`. Not thread-safe.
class key_table {
 public:
  using skip_handler = std::function<void(const std::string& key, const std::string& reason)>;

  explicit key_table(skip_handler on_skip = {}) : on_skip_(std::move(on_skip)) {}

  /// Replaces every key with `kvs`, read at store revision `revision`. Returns true if the
  /// endpoint set changed.
  bool reset(const std::vector<etcd::key_value>& kvs, std::int64_t revision);

  /// Applies a watch message's events in order. Events at or below the revision already seen
  /// are ignored (a replay after a resume). Returns true if the endpoint set changed.
  bool apply(const etcd::watch_message& m);

  /// The whole set in key order. Two keys naming the same address count once (the first key
  /// wins): an instance restarted under a new key while its old lease has not expired yet.
  std::vector<pool::endpoint> endpoints() const;

  /// The revision to resume a watch from is revision() + 1: the full read's revision, moved
  /// forward by every applied event.
  std::int64_t revision() const noexcept { return revision_; }
  std::size_t keys() const noexcept { return entries_.size(); }
  /// Unusable values seen since construction.
  std::uint64_t skipped() const noexcept { return skipped_; }

 private:
  struct entry {
    pool::endpoint endpoint;
    std::int64_t mod_revision = 0;
  };
  bool put(const etcd::key_value& kv, std::map<std::string, entry>& into);

  skip_handler on_skip_;
  std::map<std::string, entry> entries_;
  std::int64_t revision_ = 0;
  std::uint64_t skipped_ = 0;
};

/// Same addresses, weights and order.
bool same_endpoints(const std::vector<pool::endpoint>& a, const std::vector<pool::endpoint>& b);

/// `first` followed by the members of `second` whose address is not already in `first`.
std::vector<pool::endpoint> merge_endpoints(std::vector<pool::endpoint> first,
                                            const std::vector<pool::endpoint>& second);

}  // namespace sluice::discovery
