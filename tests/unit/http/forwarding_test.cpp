#include "sluice/http/forwarding.hpp"

#include <catch2/catch.hpp>

using namespace sluice::http;

TEST_CASE("hop-by-hop header names", "[http][forwarding]") {
  for (auto n : {"Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer",
                 "transfer-encoding", "UPGRADE"})
    CHECK(is_hop_by_hop(n));
  for (auto n : {"Host", "Content-Length", "Set-Cookie", "Trailers", "Proxy-Authorization",
                 "X-Forwarded-For", ""})
    CHECK_FALSE(is_hop_by_hop(n));
}

TEST_CASE("token lists", "[http][forwarding]") {
  CHECK(token_list_contains("close", "close"));
  CHECK(token_list_contains("Keep-Alive, Upgrade", "upgrade"));
  CHECK(token_list_contains(" x-foo ,\tx-bar ", "X-Bar"));
  CHECK_FALSE(token_list_contains("x-foobar", "x-foo"));
  CHECK_FALSE(token_list_contains("", "close"));
  CHECK_FALSE(token_list_contains(",,", "close"));
}

TEST_CASE("idempotent methods", "[http][forwarding]") {
  for (auto m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) CHECK(is_idempotent(m));
  for (auto m : {"POST", "PATCH", "CONNECT", "get", "LOCK"}) CHECK_FALSE(is_idempotent(m));
}

TEST_CASE("Forwarded element", "[http][forwarding]") {
  std::string s;
  append_forwarded_element(s, "192.0.2.1", "example.com:8080");
  CHECK(s == "for=192.0.2.1;host=\"example.com:8080\";proto=http");
  s.clear();
  append_forwarded_element(s, "::1", "");
  CHECK(s == "for=\"[::1]\";proto=http");
  s.clear();
  append_forwarded_element(s, "192.0.2.1", "a.test", "https");
  CHECK(s == "for=192.0.2.1;host=\"a.test\";proto=https");
}

TEST_CASE("Host values", "[http][forwarding]") {
  for (auto h : {"example.com", "example.com:8080", "127.0.0.1", "[::1]", "[::1]:80", "a_b.c",
                 "localhost:1"})
    CHECK(valid_host(h));
  for (auto h : {"", "a b", "a/b", "a@b", "a,b", ":80", "[::1", "[]", "a:8x", "a:123456",
                 "[::1]x", "a\"b", "a\\b"})
    CHECK_FALSE(valid_host(h));
}

TEST_CASE("request target forms", "[http][forwarding]") {
  auto t = classify_target("/a/b?c=d");
  CHECK(t.form == target_form::origin);
  CHECK(t.path == "/a/b");
  CHECK(t.origin == "/a/b?c=d");

  t = classify_target("http://Example.com:8080/x?y");
  CHECK(t.form == target_form::absolute);
  CHECK(t.authority == "Example.com:8080");
  CHECK(t.origin == "/x?y");
  CHECK(t.path == "/x");

  t = classify_target("HTTPS://example.com");
  CHECK(t.form == target_form::absolute);
  CHECK(t.origin == "/");

  CHECK(classify_target("*").form == target_form::asterisk);
  CHECK(classify_target("example.com:443").form == target_form::authority);
  CHECK(classify_target("").form == target_form::invalid);
  CHECK(classify_target("x/y").form == target_form::invalid);
  CHECK(classify_target("http://u@host/").form == target_form::invalid);
  CHECK(classify_target("ftp://host/").form == target_form::invalid);
  CHECK(classify_target("http:///x").form == target_form::invalid);
}
