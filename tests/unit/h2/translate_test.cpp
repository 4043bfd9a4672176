#include "sluice/h2/translate.hpp"

#include <catch2/catch.hpp>

using namespace sluice::h2;

namespace {

header_list get(std::string path = "/p?q=1") {
  return {{":method", "GET"}, {":scheme", "https"}, {":authority", "example.com"},
          {":path", std::move(path)}};
}

bool has_line(const std::string& head, const std::string& line) {
  return head.find("\r\n" + line + "\r\n") != std::string::npos;
}

}  // namespace

TEST_CASE("a GET becomes an origin-form request with Host from :authority", "[h2][translate]") {
  auto h = get();
  h.push_back({"accept", "*/*"});
  auto r = to_http1_request(h, true, {"10.0.0.1"});
  REQUIRE(r.error.empty());
  CHECK(r.framing == body_framing::none);
  CHECK(r.head.starts_with("GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\n"));
  CHECK(r.head.ends_with("\r\n\r\n"));
  CHECK(has_line(r.head, "accept: */*"));
  CHECK(has_line(r.head, "X-Forwarded-For: 10.0.0.1"));
  CHECK(has_line(r.head, "X-Forwarded-Proto: http"));
  CHECK(has_line(r.head, "X-Forwarded-Host: example.com"));
  CHECK(r.head.find("Content-Length") == std::string::npos);
  CHECK(r.head.find(":scheme") == std::string::npos);
  CHECK(r.head.find("Forwarded: for") == std::string::npos);
}

TEST_CASE("connection-specific fields are dropped, cookies joined", "[h2][translate]") {
  auto h = get();
  h.push_back({"connection", "close"});
  h.push_back({"keep-alive", "1"});
  h.push_back({"te", "trailers"});
  h.push_back({"upgrade", "h2c"});
  h.push_back({"transfer-encoding", "chunked"});
  h.push_back({"proxy-connection", "x"});
  h.push_back({"expect", "100-continue"});
  h.push_back({"host", "other.example"});
  h.push_back({"cookie", "a=1"});
  h.push_back({"cookie", "b=2"});
  auto r = to_http1_request(h, true, {"10.0.0.1"});
  REQUIRE(r.error.empty());
  for (auto* n : {"connection:", "keep-alive:", "te:", "upgrade:", "transfer-encoding:",
                  "proxy-connection:", "expect:", "other.example"})
    CHECK(r.head.find(n) == std::string::npos);
  CHECK(has_line(r.head, "cookie: a=1; b=2"));
}

TEST_CASE("request bodies: Content-Length when declared, else chunked", "[h2][translate]") {
  header_list post{{":method", "POST"}, {":authority", "a"}, {":path", "/echo"}};
  SECTION("declared length") {
    auto h = post;
    h.push_back({"content-length", "5242880"});
    auto r = to_http1_request(h, false, {"1.2.3.4"});
    REQUIRE(r.error.empty());
    CHECK(r.framing == body_framing::length);
    CHECK(r.length == 5242880);
    CHECK(has_line(r.head, "Content-Length: 5242880"));
  }
  SECTION("unknown length") {
    auto r = to_http1_request(post, false, {"1.2.3.4"});
    CHECK(r.framing == body_framing::chunked);
    CHECK(has_line(r.head, "Transfer-Encoding: chunked"));
  }
  SECTION("END_STREAM with the headers: an empty body, said so for POST") {
    auto r = to_http1_request(post, true, {"1.2.3.4"});
    CHECK(r.framing == body_framing::none);
    CHECK(has_line(r.head, "Content-Length: 0"));
  }
  SECTION("bad or conflicting lengths") {
    auto h = post;
    h.push_back({"content-length", "12x"});
    CHECK_FALSE(to_http1_request(h, false, {"1.2.3.4"}).error.empty());
    auto h2 = post;
    h2.push_back({"content-length", "1"});
    h2.push_back({"content-length", "2"});
    CHECK_FALSE(to_http1_request(h2, false, {"1.2.3.4"}).error.empty());
  }
}

TEST_CASE("X-Forwarded-For is appended to, Forwarded when asked", "[h2][translate]") {
  auto h = get();
  h.push_back({"x-forwarded-for", "1.1.1.1"});
  h.push_back({"x-forwarded-proto", "ftp"});
  h.push_back({"x-forwarded-host", "evil"});
  h.push_back({"forwarded", "for=1.1.1.1"});
  auto r = to_http1_request(h, true, {"::1", "https", true});
  REQUIRE(r.error.empty());
  CHECK(has_line(r.head, "X-Forwarded-For: 1.1.1.1, ::1"));
  CHECK(has_line(r.head, "X-Forwarded-Proto: https"));
  CHECK(r.head.find("ftp") == std::string::npos);
  CHECK(r.head.find("evil") == std::string::npos);
  CHECK(has_line(r.head, "Forwarded: for=1.1.1.1, for=\"[::1]\";host=\"example.com\";proto=https"));
  // Without `forwarded`, an incoming Forwarded field passes through untouched.
  auto plain = to_http1_request(h, true, {"::1"});
  CHECK(has_line(plain.head, "forwarded: for=1.1.1.1"));
}

TEST_CASE("untranslatable requests", "[h2][translate]") {
  CHECK_FALSE(to_http1_request({{":path", "/"}}, true, {"1.2.3.4"}).error.empty());
  CHECK_FALSE(
      to_http1_request({{":method", "CONNECT"}, {":authority", "a:443"}}, true, {"1.2.3.4"})
          .error.empty());
  CHECK_FALSE(to_http1_request({{":method", "GET"}, {":authority", "a"}}, true, {"1.2.3.4"})
                  .error.empty());
  auto h = get();
  h.push_back({"x", "a\r\nInjected: 1"});
  CHECK_FALSE(to_http1_request(h, true, {"1.2.3.4"}).error.empty());
  CHECK_FALSE(to_http1_request(get("/a b"), true, {"1.2.3.4"}).error.empty());
  auto bad_host = get();
  bad_host[2].value = "a/b";
  CHECK_FALSE(to_http1_request(bad_host, true, {"1.2.3.4"}).error.empty());
}

TEST_CASE("no :authority: the host field, else an empty Host", "[h2][translate]") {
  header_list h{{":method", "GET"}, {":path", "/"}, {"host", "h.example:8080"}};
  auto r = to_http1_request(h, true, {"1.2.3.4"});
  CHECK(has_line(r.head, "Host: h.example:8080"));
  header_list none{{":method", "OPTIONS"}, {":path", "*"}};
  auto r2 = to_http1_request(none, true, {"1.2.3.4"});
  REQUIRE(r2.error.empty());
  CHECK(r2.head.starts_with("OPTIONS * HTTP/1.1\r\nHost: \r\n"));
}

TEST_CASE("responses: lower-case names, connection-specific fields dropped", "[h2][translate]") {
  header_list f{{"Content-Type", "text/plain"}, {"Connection", "keep-alive, X-Hop"},
                {"Keep-Alive", "timeout=5"}, {"Transfer-Encoding", "chunked"},
                {"Upgrade", "h2c"}, {"Proxy-Connection", "x"}, {"X-Hop", "1"},
                {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}, {"Content-Length", "3"}};
  auto h = to_h2_response(200, f);
  REQUIRE(h.size() == 5);
  CHECK(h[0].name == ":status");
  CHECK(h[0].value == "200");
  CHECK(h[1].name == "content-type");
  CHECK(h[2].name == "set-cookie");
  CHECK(h[2].value == "a=1");
  CHECK(h[3].name == "set-cookie");
  CHECK(h[3].value == "b=2");
  CHECK(h[4].name == "content-length");
}

TEST_CASE("trailers keep only end-to-end fields", "[h2][translate]") {
  header_list f{{"Grpc-Status", "0"}, {"Content-Length", "1"}, {"Trailer", "x"},
                {"Connection", "close"}, {"X-Checksum", "abc"}};
  auto t = to_h2_trailers(f);
  REQUIRE(t.size() == 2);
  CHECK(t[0].name == "grpc-status");
  CHECK(t[1].name == "x-checksum");
}

TEST_CASE("request fields with an underscore follow the listener", "[h2][translate]") {
  using action = sluice::config::listener_limits::underscore_action;
  header_list h{{":method", "GET"}, {":authority", "a"}, {":path", "/"},
                {"content_length", "99"}, {"x-kept", "1"}};
  forward_info fwd{"1.2.3.4"};
  auto r = to_http1_request(h, true, fwd);
  REQUIRE(r.error.empty());
  CHECK(r.head.find("content_length") == std::string::npos);
  CHECK(has_line(r.head, "x-kept: 1"));
  fwd.underscores = action::allow;
  r = to_http1_request(h, true, fwd);
  REQUIRE(r.error.empty());
  CHECK(has_line(r.head, "content_length: 99"));
  fwd.underscores = action::reject;
  r = to_http1_request(h, true, fwd);
  CHECK(r.error == "header field name with an underscore");
}
