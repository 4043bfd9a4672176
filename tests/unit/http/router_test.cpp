#include "sluice/http/router.hpp"

#include <catch2/catch.hpp>

using sluice::http::router;

namespace {

sluice::config::route make(std::string host, std::string prefix) {
  sluice::config::route r;
  r.match.host = std::move(host);
  r.match.path_prefix = std::move(prefix);
  r.cluster = "c";
  return r;
}

}  // namespace

TEST_CASE("router: empty table matches nothing", "[http][router]") {
  router r({});
  CHECK(r.match("example.com", "/") == -1);
}

TEST_CASE("router: longest path prefix wins among any-host routes", "[http][router]") {
  router r({make("", "/"), make("", "/api"), make("", "/api/v2")});
  CHECK(r.match("x", "/") == 0);
  CHECK(r.match("x", "/other") == 0);
  CHECK(r.match("x", "/api") == 1);
  CHECK(r.match("x", "/apix") == 1);
  CHECK(r.match("x", "/api/v2/users") == 2);
  CHECK(r.match("", "/api/v1") == 1);
}

TEST_CASE("router: prefix compares bytes exactly", "[http][router]") {
  router r({make("", "/API")});
  CHECK(r.match("x", "/api") == -1);
  CHECK(r.match("x", "/API/x") == 0);
}

TEST_CASE("router: exact host beats wildcard beats any", "[http][router]") {
  router r({make("", "/"), make("*.example.com", "/"), make("www.example.com", "/")});
  CHECK(r.match("www.example.com", "/") == 2);
  CHECK(r.match("api.example.com", "/") == 1);
  CHECK(r.match("a.b.example.com", "/") == 1);
  CHECK(r.match("example.com", "/") == 0);  // the wildcard needs a label before the suffix
  CHECK(r.match("other.org", "/") == 0);
}

TEST_CASE("router: host compare ignores case, port and trailing dot", "[http][router]") {
  router r({make("Www.Example.COM", "/")});
  CHECK(r.match("www.example.com", "/") == 0);
  CHECK(r.match("WWW.EXAMPLE.COM:8080", "/") == 0);
  CHECK(r.match("www.example.com.", "/") == 0);
  CHECK(r.match("www.example.com.:80", "/") == 0);
  CHECK(r.match("www.example.org", "/") == -1);
  CHECK(r.match("xwww.example.com", "/") == -1);
}

TEST_CASE("router: IPv6 literal hosts", "[http][router]") {
  router r({make("[::1]", "/")});
  CHECK(r.match("[::1]:8080", "/") == 0);
  CHECK(r.match("[::1]", "/") == 0);
  CHECK(r.match("[::2]", "/") == -1);
}

TEST_CASE("router: longest wildcard first", "[http][router]") {
  router r({make("*.example.com", "/"), make("*.api.example.com", "/")});
  CHECK(r.match("x.api.example.com", "/") == 1);
  CHECK(r.match("x.www.example.com", "/") == 0);
  CHECK(r.match("api.example.com", "/") == 0);
}

TEST_CASE("router: falls back to a less specific host when no prefix matches", "[http][router]") {
  router r({make("", "/"), make("a.com", "/api")});
  CHECK(r.match("a.com", "/api/x") == 1);
  CHECK(r.match("a.com", "/") == 0);
}

TEST_CASE("router: within a host the longest prefix wins, ties go to the first", "[http][router]") {
  router r({make("a.com", "/"), make("a.com", "/x"), make("a.com", "/x"), make("", "/x/y")});
  CHECK(r.match("a.com", "/x/y") == 1);
  CHECK(r.match("a.com", "/z") == 0);
  CHECK(r.match("b.com", "/x/y") == 3);
  CHECK(r.match("b.com", "/x") == -1);
}

TEST_CASE("host_without_port", "[http][router]") {
  using sluice::http::host_without_port;
  CHECK(host_without_port("a.com:80") == "a.com");
  CHECK(host_without_port("a.com") == "a.com");
  CHECK(host_without_port("a.com.") == "a.com");
  CHECK(host_without_port("[::1]:80") == "[::1]");
  CHECK(host_without_port("") == "");
}
