#include "sluice/discovery/etcd_protocol.hpp"

#include <catch2/catch.hpp>

namespace etcd = sluice::discovery::etcd;

TEST_CASE("base64 both ways", "[etcd][protocol]") {
  CHECK(etcd::base64_encode("") == "");
  CHECK(etcd::base64_encode("f") == "Zg==");
  CHECK(etcd::base64_encode("fo") == "Zm8=");
  CHECK(etcd::base64_encode("foo") == "Zm9v");
  CHECK(etcd::base64_encode("/nodes/") == "L25vZGVzLw==");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  CHECK(etcd::base64_decode(etcd::base64_encode(all)) == all);
  CHECK(etcd::base64_decode("Zg==") == std::string("f"));
  CHECK_FALSE(etcd::base64_decode("Zg="));
  CHECK_FALSE(etcd::base64_decode("Z==="));
  CHECK_FALSE(etcd::base64_decode("Zg=a"));
  CHECK_FALSE(etcd::base64_decode("Zg==Zg=="));
  CHECK_FALSE(etcd::base64_decode("Z!9v"));
}

TEST_CASE("prefix range end", "[etcd][protocol]") {
  CHECK(etcd::prefix_range_end("/nodes/") == "/nodes0");
  CHECK(etcd::prefix_range_end("a") == "b");
  CHECK(etcd::prefix_range_end(std::string("a\xff", 2)) == "b");
  CHECK(etcd::prefix_range_end(std::string("\xff\xff", 2)) == std::string(1, '\0'));
  CHECK(etcd::prefix_range_end("") == std::string(1, '\0'));
}

TEST_CASE("request bodies", "[etcd][protocol]") {
  CHECK(etcd::range_request("/nodes/") == R"({"key":"L25vZGVzLw==","range_end":"L25vZGVzMA=="})");
  CHECK(etcd::watch_request("/nodes/", 13) ==
        R"({"create_request":{"key":"L25vZGVzLw==","range_end":"L25vZGVzMA==","start_revision":"13"}})");
  CHECK(etcd::lease_grant_request(5) == R"({"TTL":"5"})");
  CHECK(etcd::lease_id_request(7587867) == R"({"ID":"7587867"})");
  CHECK(etcd::put_request("/nodes/a", "x", 12) == R"({"key":"L25vZGVzL2E=","value":"eA==","lease":"12"})");
  CHECK(etcd::delete_request("/nodes/a") == R"({"key":"L25vZGVzL2E="})");
}

TEST_CASE("range responses as etcd 3.4 writes them", "[etcd][protocol]") {
  std::string err;
  auto r = etcd::parse_range_response(
      R"({"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},)"
      R"("kvs":[{"key":"L25vZGVzL2E=","create_revision":"2","mod_revision":"3","version":"1",)"
      R"("value":"MTI3LjAuMC4xOjgwMDE=","lease":"7587867"},)"
      R"({"key":"L25vZGVzL2I=","create_revision":"4","mod_revision":"4","version":"1"}],"count":"2"})",
      &err);
  REQUIRE(r);
  CHECK(r->revision == 4);
  REQUIRE(r->kvs.size() == 2);
  CHECK(r->kvs[0].key == "/nodes/a");
  CHECK(r->kvs[0].value == "127.0.0.1:8001");
  CHECK(r->kvs[0].mod_revision == 3);
  CHECK(r->kvs[0].lease == 7587867);
  CHECK(r->kvs[1].value.empty());  // an empty value is left out of the JSON
  auto empty = etcd::parse_range_response(R"({"header":{"revision":"9"}})", &err);
  REQUIRE(empty);
  CHECK(empty->kvs.empty());

  CHECK_FALSE(etcd::parse_range_response("nope", &err));
  CHECK(err.rfind("invalid JSON", 0) == 0);
  CHECK_FALSE(etcd::parse_range_response(R"({"error":"etcdserver: user name is empty","code":3})", &err));
  CHECK(err == "etcd error 3: etcdserver: user name is empty");
  CHECK_FALSE(etcd::parse_range_response(R"({"header":{"revision":"x"}})", &err));
  CHECK_FALSE(etcd::parse_range_response(R"({"header":{"revision":"1"},"kvs":[{"key":"%%%"}]})", &err));
}

TEST_CASE("errors and auth detection", "[etcd][protocol]") {
  auto e = etcd::parse_error(R"({"error":"etcdserver: invalid auth token","message":"x","code":16})");
  REQUIRE(e);
  CHECK(e->code == 16);
  CHECK(e->is_auth());
  auto s = etcd::parse_error(R"({"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: invalid auth token"}})");
  REQUIRE(s);
  CHECK(s->code == 16);
  CHECK(etcd::gateway_error{3, "etcdserver: user name is empty"}.is_auth());
  CHECK_FALSE(etcd::gateway_error{9, "etcdserver: mvcc: required revision has been compacted"}.is_auth());
  CHECK_FALSE(etcd::parse_error(R"({"header":{}})"));
  CHECK_FALSE(etcd::parse_error("garbage"));
}

TEST_CASE("lease and auth answers", "[etcd][protocol]") {
  std::string err;
  CHECK(etcd::parse_lease_grant_response(R"({"header":{"revision":"2"},"ID":"5865272291728178696","TTL":"5"})", &err) ==
        5865272291728178696LL);
  CHECK(etcd::parse_keepalive_response(R"({"result":{"header":{"revision":"2"},"ID":"1","TTL":"5"}})", &err) == 5);
  // After expiry or revoke etcd answers without a TTL: zero.
  CHECK(etcd::parse_keepalive_response(R"({"result":{"header":{"revision":"4"},"ID":"1"}})", &err) == 0);
  CHECK(etcd::parse_authenticate_response(R"({"header":{},"token":"WkWYsAoJlFsvtXsA.22"})", &err) ==
        std::string("WkWYsAoJlFsvtXsA.22"));
  CHECK_FALSE(etcd::parse_authenticate_response(
      R"({"error":"etcdserver: authentication failed, invalid user ID or password","code":3})", &err));
  CHECK(etcd::parse_header_revision(R"({"header":{"revision":"12"}})", &err) == 12);
}

TEST_CASE("watch stream decoding, however the bytes are split", "[etcd][protocol]") {
  const std::string stream =
      R"({"result":{"header":{"revision":"2"},"created":true}})"
      "\n"
      R"({"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"L25vZGVzL2I=","create_revision":"3","mod_revision":"3","version":"1","value":"MTI3LjAuMC4xOjgwMDI="}}]}})"
      "\n"
      R"({"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"L25vZGVzL2I=","mod_revision":"4"}}]}})"
      "\n"
      R"({"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}})"
      "\n";
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{64}, stream.size()}) {
    etcd::watch_decoder d;
    std::vector<etcd::watch_message> out;
    std::string err;
    for (std::size_t i = 0; i < stream.size(); i += step)
      REQUIRE(d.feed(std::string_view(stream).substr(i, step), out, &err));
    REQUIRE(out.size() == 4);
    CHECK(out[0].created);
    CHECK(out[0].revision == 2);
    REQUIRE(out[1].events.size() == 1);
    CHECK(out[1].events[0].type == etcd::watch_event::kind::put);
    CHECK(out[1].events[0].kv.key == "/nodes/b");
    CHECK(out[1].events[0].kv.value == "127.0.0.1:8002");
    CHECK(out[2].events[0].type == etcd::watch_event::kind::del);
    CHECK(out[2].events[0].kv.mod_revision == 4);
    CHECK(out[3].canceled);
    CHECK(out[3].compact_revision == 3);
  }
}

TEST_CASE("watch stream errors", "[etcd][protocol]") {
  std::string err;
  {
    etcd::watch_decoder d;
    std::vector<etcd::watch_message> out;
    CHECK_FALSE(d.feed("{\"result\": nope}", out, &err));
    CHECK(err.find("invalid JSON") != std::string::npos);
    CHECK_FALSE(d.feed("{}", out, &err));  // stays failed
  }
  {
    etcd::watch_decoder d(100);
    std::vector<etcd::watch_message> out;
    CHECK_FALSE(d.feed("{\"result\":{\"x\":\"" + std::string(200, 'a'), out, &err));
    CHECK(err.find("exceeds 100 bytes") != std::string::npos);
  }
  {
    etcd::watch_decoder d;
    std::vector<etcd::watch_message> out;
    REQUIRE(d.feed(R"({"error":{"grpc_code":16,"message":"etcdserver: invalid auth token"}})", out, &err));
    REQUIRE(out.size() == 1);
    CHECK(out[0].error == "etcdserver: invalid auth token");
    CHECK(out[0].error_code == 16);
  }
  CHECK_FALSE(etcd::parse_watch_message(R"({"result":{"events":[{"type":"BOGUS","kv":{}}]}})", &err));
  CHECK_FALSE(etcd::parse_watch_message(R"({"result":{"events":[{"type":"PUT"}]}})", &err));
  CHECK_FALSE(etcd::parse_watch_message(R"([1])", &err));
  auto canceled = etcd::parse_watch_message(
      R"({"result":{"header":{"revision":"4"},"watch_id":"-1","created":true,"canceled":true,)"
      R"("cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}})",
      &err);
  REQUIRE(canceled);
  CHECK(canceled->canceled);
  CHECK(etcd::gateway_error{0, canceled->cancel_reason}.is_auth());
}
