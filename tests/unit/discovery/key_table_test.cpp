#include "sluice/discovery/key_table.hpp"

#include <catch2/catch.hpp>

#include "sluice/core/address.hpp"

namespace d = sluice::discovery;
namespace etcd = sluice::discovery::etcd;

namespace {

etcd::key_value kv(std::string key, std::string value, std::int64_t rev) {
  return {std::move(key), std::move(value), rev, 0};
}

etcd::watch_message put(std::string key, std::string value, std::int64_t rev) {
  etcd::watch_message m;
  m.revision = rev;
  m.events.push_back({etcd::watch_event::kind::put, kv(std::move(key), std::move(value), rev)});
  return m;
}

etcd::watch_message del(std::string key, std::int64_t rev) {
  etcd::watch_message m;
  m.revision = rev;
  m.events.push_back({etcd::watch_event::kind::del, kv(std::move(key), "", rev)});
  return m;
}

std::vector<std::string> addresses(const std::vector<sluice::pool::endpoint>& eps) {
  std::vector<std::string> out;
  for (const auto& e : eps) out.push_back(e.address.text + "*" + std::to_string(e.weight));
  return out;
}

sluice::pool::endpoint ep(const char* a, std::uint32_t w = 1) { return {*sluice::core::resolve(a), w}; }

}  // namespace

TEST_CASE("a full read then watch events give the whole set each time", "[etcd][table]") {
  std::vector<std::string> skipped;
  d::key_table t([&](const std::string& k, const std::string&) { skipped.push_back(k); });
  CHECK(t.reset({kv("/n/b", "127.0.0.1:8002", 3), kv("/n/a", R"({"address":"127.0.0.1:8001","weight":2})", 2)},
                5));
  CHECK(t.revision() == 5);
  CHECK(addresses(t.endpoints()) == std::vector<std::string>{"127.0.0.1:8001*2", "127.0.0.1:8002*1"});

  CHECK(t.apply(put("/n/c", "127.0.0.1:8003", 6)));
  CHECK(t.revision() == 6);
  CHECK(t.endpoints().size() == 3);
  CHECK(t.apply(del("/n/a", 7)));
  CHECK(addresses(t.endpoints()) == std::vector<std::string>{"127.0.0.1:8002*1", "127.0.0.1:8003*1"});
  // Same value written again: no change to deliver.
  CHECK_FALSE(t.apply(put("/n/c", "127.0.0.1:8003", 8)));
  CHECK(t.revision() == 8);
  // Weight change is a change.
  CHECK(t.apply(put("/n/c", R"({"address":"127.0.0.1:8003","weight":5})", 9)));
  // Deleting an unknown key changes nothing.
  CHECK_FALSE(t.apply(del("/n/zz", 10)));
  // A replayed old event (resume overlap) is ignored.
  CHECK_FALSE(t.apply(put("/n/a", "127.0.0.1:8001", 7)));
  CHECK(t.revision() == 10);
  CHECK(skipped.empty());
  // Messages without events (created, progress) change nothing.
  etcd::watch_message created;
  created.created = true;
  created.revision = 99;
  CHECK_FALSE(t.apply(created));
  CHECK(t.revision() == 10);
}

TEST_CASE("unusable values are skipped, counted and remove their key", "[etcd][table]") {
  std::vector<std::pair<std::string, std::string>> skipped;
  d::key_table t([&](const std::string& k, const std::string& r) { skipped.emplace_back(k, r); });
  CHECK(t.reset({kv("/n/empty", "", 2), kv("/n/good", "127.0.0.1:8001", 3), kv("/n/json", "{bad", 4),
                 kv("/n/port", "127.0.0.1:99999", 5), kv("/n/w", R"({"address":"127.0.0.1:2","weight":0})", 6)},
                6));
  CHECK(addresses(t.endpoints()) == std::vector<std::string>{"127.0.0.1:8001*1"});
  CHECK(t.skipped() == 4);
  REQUIRE(skipped.size() == 4);
  CHECK(skipped[0].first == "/n/empty");
  CHECK(skipped[0].second.rfind("empty value", 0) == 0);
  // A good key overwritten with garbage leaves the set.
  CHECK(t.apply(put("/n/good", "garbage", 7)));
  CHECK(t.endpoints().empty());
  CHECK(t.skipped() == 5);
  // ... and comes back when fixed.
  CHECK(t.apply(put("/n/good", "127.0.0.1:8001", 8)));
  CHECK(t.endpoints().size() == 1);
}

TEST_CASE("a reset reconciles: keys missing from the read are gone", "[etcd][table]") {
  d::key_table t;
  t.reset({kv("/n/a", "127.0.0.1:1", 2), kv("/n/b", "127.0.0.1:2", 3)}, 3);
  // Say the watch missed a delete of /n/a and a put of /n/c (compaction): the re-read fixes it.
  CHECK(t.reset({kv("/n/b", "127.0.0.1:2", 3), kv("/n/c", "127.0.0.1:3", 9)}, 12));
  CHECK(addresses(t.endpoints()) == std::vector<std::string>{"127.0.0.1:2*1", "127.0.0.1:3*1"});
  CHECK(t.revision() == 12);
  CHECK_FALSE(t.reset({kv("/n/b", "127.0.0.1:2", 3), kv("/n/c", "127.0.0.1:3", 9)}, 13));
}

TEST_CASE("two keys with one address count once", "[etcd][table]") {
  d::key_table t;
  t.reset({kv("/n/old", "127.0.0.1:1", 2), kv("/n/new", R"({"address":"127.0.0.1:1","weight":3})", 3)}, 3);
  CHECK(addresses(t.endpoints()) == std::vector<std::string>{"127.0.0.1:1*3"});  // "/n/new" < "/n/old"
  CHECK(t.apply(del("/n/new", 4)));
  CHECK(addresses(t.endpoints()) == std::vector<std::string>{"127.0.0.1:1*1"});
}

TEST_CASE("merging static and discovered endpoints", "[etcd][table]") {
  auto merged = d::merge_endpoints({ep("127.0.0.1:1", 2)}, {ep("127.0.0.1:1"), ep("127.0.0.1:3")});
  CHECK(addresses(merged) == std::vector<std::string>{"127.0.0.1:1*2", "127.0.0.1:3*1"});
  CHECK(d::same_endpoints(merged, merged));
  CHECK_FALSE(d::same_endpoints(merged, {ep("127.0.0.1:1", 2)}));
  CHECK_FALSE(d::same_endpoints({ep("127.0.0.1:1", 2)}, {ep("127.0.0.1:1", 1)}));
}
