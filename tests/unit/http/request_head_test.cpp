#include "sluice/http/message_head.hpp"

#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "http/chunked_decoder.hpp"

using namespace sluice::http;

namespace {

// The verdict with the head it describes (views into `bytes`, which the caller keeps).
struct parsed {
  std::string bytes;
  request_head h;
  request_verdict v;
};

// Parses `bytes` in one go (or offered byte by byte when `trickle`): the final verdict.
std::unique_ptr<parsed> parse_keep(const std::string& bytes,
                                   sluice::config::listener_limits limits = {},
                                   bool trickle = false) {
  auto out = std::make_unique<parsed>();
  out->bytes = bytes;
  std::string_view all = out->bytes;
  if (trickle) {
    for (std::size_t n = 1; n <= all.size(); ++n) {
      out->v = parse_request_head(all.substr(0, n), limits, out->h);
      if (out->v.what != head_parse::need_more) break;
    }
    return out;
  }
  out->v = parse_request_head(all, limits, out->h);
  return out;
}

request_verdict parse(const std::string& bytes, sluice::config::listener_limits limits = {},
                      bool trickle = false) {
  return parse_keep(bytes, limits, trickle)->v;
}

unsigned status(const std::string& bytes, sluice::config::listener_limits limits = {}) {
  auto r = parse(bytes, limits);
  if (r.what == head_parse::need_more) return 1;  // "incomplete"
  return r.what == head_parse::done ? 0 : r.status;
}

}  // namespace

TEST_CASE("request head: a plain GET", "[http][request]") {
  std::string req = "GET /x?y=1 HTTP/1.1\r\nHost: a.com\r\nUser-Agent: t\r\n\r\nNEXT";
  auto k = parse_keep(req);
  REQUIRE(k->v.what == head_parse::done);
  CHECK(k->h.size == req.size() - 4);
  CHECK(k->h.target_parts.path == "/x");
  CHECK(k->h.method == "GET");
  CHECK(k->h.host == "a.com");
  CHECK(k->h.find("user-agent") == "t");
  CHECK(k->h.keep_alive);
  CHECK(k->h.framing == body_framing::none);
  auto t = parse(req, {}, true);
  CHECK(t.what == head_parse::done);
}

TEST_CASE("request head: incomplete is need_more", "[http][request]") {
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\n") == 1);
  CHECK(status("GET / HT") == 1);
  CHECK(status("") == 1);
  // An empty view with no data pointer at all (found by tests/fuzz under UBSan: memchr of null).
  request_head h;
  CHECK(parse_request_head(std::string_view{}, {}, h).what == head_parse::need_more);
}

TEST_CASE("request head: leading empty lines are tolerated", "[http][request]") {
  std::string req = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  auto k = parse_keep(req);
  REQUIRE(k->v.what == head_parse::done);
  CHECK(k->h.size == req.size());
  CHECK(k->h.method == "GET");
}

TEST_CASE("request head: HTTP/1.0 without Host is fine, HTTP/1.1 is not", "[http][request]") {
  CHECK(status("GET / HTTP/1.0\r\n\r\n") == 0);
  CHECK(status("GET / HTTP/1.1\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost:\r\n\r\n") == 400);
}

TEST_CASE("request head: framing conflicts", "[http][request]") {
  // Content-Length with Transfer-Encoding, both orders.
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n") == 400);
  // Differing duplicate Content-Length; equal duplicates are allowed by RFC 9110 §8.6.
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n") == 0);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n") == 400);
}

TEST_CASE("request head: Transfer-Encoding must be exactly chunked", "[http][request]") {
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") == 0);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n") == 0);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
}

TEST_CASE("request head: field syntax", "[http][request]") {
  // obs-fold
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n") == 400);
  // whitespace between name and colon
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A\t: 1\r\n\r\n") == 400);
  // NUL, bare CR, bare LF inside a value
  CHECK(status(std::string("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\0002\r\n\r\n", 37)) == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\n2: 3\r\n\r\n") == 400);
  // empty name, no colon
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n") == 400);
  // a leading space on the first field line
  CHECK(status("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == 400);
  // tabs and obs-text in values are fine
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\t2 \xe9\r\n\r\n") == 0);
}

TEST_CASE("request head: request line", "[http][request]") {
  CHECK(status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.x\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET / FOO/1.1\r\nHost: a\r\n\r\n") == 400);
  // Beast's parser refuses versions other than 1.0 and 1.1 as a syntax error.
  CHECK(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/0.9\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET x HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n") == 405);
  CHECK(status("PURGE / HTTP/1.1\r\nHost: a\r\n\r\n") == 0);  // extension methods are tokens
  CHECK(status("GET / HTTP/1.1\nHost: a\n\n") != 1);  // bare LF line ends: decided, not hung
}

TEST_CASE("request head: absolute-form target", "[http][request]") {
  std::string req = "GET http://b.com:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n";
  auto k = parse_keep(req);
  REQUIRE(k->v.what == head_parse::done);
  CHECK(k->h.target_parts.form == target_form::absolute);
  CHECK(k->h.target_parts.authority == "b.com:81");
  CHECK(k->h.target_parts.origin == "/p?q");
  CHECK(status("GET http://u@b.com/ HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
}

TEST_CASE("request head: limits", "[http][request]") {
  sluice::config::listener_limits l;
  l.max_request_line = 64;
  l.max_header_bytes = 256;
  l.max_headers = 3;
  l.max_body = 100;
  std::string long_target = "/" + std::string(100, 'a');
  // 414 as soon as the line is too long, even before the head ends.
  CHECK(status("GET " + long_target, l) == 414);
  CHECK(status("GET " + long_target + " HTTP/1.1\r\nHost: a\r\n\r\n", l) == 414);
  // 431 for a head too large or too many fields
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: " + std::string(300, 'b') + "\r\n\r\n", l) == 431);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: " + std::string(300, 'b'), l) == 431);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", l) == 0);
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", l) == 431);
  // 413 for a declared body over the limit
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", l) == 0);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", l) == 413);
  // Trickled byte by byte gives the same answers.
  CHECK(parse("GET " + long_target + " HTTP/1.1\r\n", l, true).status == 414);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: " + std::string(300, 'b') + "\r\n\r\n", l, true).status == 431);
}

TEST_CASE("request head: chunked body decoding rejects bad chunk sizes", "[http][request]") {
  auto body_status = [](const std::string& body) {
    std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    std::string all = head + body;
    request_head h;
    REQUIRE(parse_request_head(all, {}, h).what == head_parse::done);
    REQUIRE(h.framing == body_framing::chunked);
    chunked_decoder d;
    std::string_view rest = std::string_view(all).substr(h.size);
    char buf[64];
    while (!rest.empty() && !d.done() && !d.failed()) {
      std::size_t produced = 0;
      auto n = d.decode(rest, buf, sizeof buf, produced);
      rest.remove_prefix(n);
      if (n == 0) break;
    }
    if (d.failed()) return std::string("error");
    return std::string(d.done() ? "done" : "more");
  };
  CHECK(body_status("3\r\nabc\r\n0\r\n\r\n") == "done");
  CHECK(body_status("3;ext=1\r\nabc\r\n0\r\n\r\n") == "done");
  CHECK(body_status("zz\r\nabc\r\n0\r\n\r\n") == "error");
  CHECK(body_status("-3\r\nabc\r\n0\r\n\r\n") == "error");
  CHECK(body_status("3\r\nabcd\r\n0\r\n\r\n") == "error");
  CHECK(body_status("fffffffffffffffffffff\r\n") == "error");
  CHECK(body_status("3 \r\nabc\r\n0\r\n\r\n") == "error");
  CHECK(body_status("3\r\nabc\r\n0\r\n\n") == "error");
}

TEST_CASE("request head: the head arriving in pieces", "[http][request]") {
  std::string head = "GET /a HTTP/1.1\r\nHost: x\r\nX-One: 1\r\n\r\n";
  for (std::size_t split : {0u, 1u, 17u, 20u, 26u, 30u, 36u, 37u}) {
    request_head h;
    CHECK(parse_request_head(std::string_view(head).substr(0, split), {}, h).what ==
          head_parse::need_more);
    REQUIRE(parse_request_head(head, {}, h).what == head_parse::done);
    CHECK(h.size == head.size());
    CHECK(h.find("X-ONE") == "1");
  }
}

TEST_CASE("request head: what the proxy needs to know", "[http][request]") {
  auto k = parse_keep(
      "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-continue\r\n"
      "Connection: Upgrade, X-Hop\r\nUpgrade: websocket\r\nX-Forwarded-For: 1.2.3.4\r\n"
      "X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Hop: 1\r\n\r\n");
  REQUIRE(k->v.what == head_parse::done);
  auto& h = k->h;
  CHECK(h.framing == body_framing::length);
  CHECK(h.length == 12);
  CHECK(h.expect == "100-continue");
  CHECK(h.upgrade);
  CHECK(h.upgrade_value == "websocket");
  CHECK(h.connection_names_fields);
  CHECK(named_by_connection(h.fields, "x-hop"));
  CHECK_FALSE(named_by_connection(h.fields, "host"));
  using kind = head_field::kind;
  std::vector<kind> kinds;
  for (const auto& f : h.fields) kinds.push_back(f.what);
  CHECK(kinds == std::vector<kind>{kind::host, kind::content_length, kind::expect,
                                   kind::hop_by_hop, kind::hop_by_hop, kind::x_forwarded_for,
                                   kind::x_forwarded_other, kind::forwarded, kind::end_to_end});
  // Kept lines, copied as they came.
  std::string out;
  append_field_lines(out, k->bytes, h.fields,
                     [](const head_field& f) { return f.what == kind::end_to_end ||
                                                      f.what == kind::host; });
  CHECK(out == "Host: h\r\nX-Hop: 1\r\n");

  CHECK_FALSE(parse_keep("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")->h.keep_alive);
  CHECK_FALSE(parse_keep("GET / HTTP/1.0\r\n\r\n")->h.keep_alive);
  CHECK(parse_keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")->h.keep_alive);
  // Upgrade needs both fields.
  CHECK_FALSE(parse_keep("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")->h.upgrade);
  CHECK(parse_keep("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")->h.framing ==
        body_framing::none);
  CHECK(status("GET / HTTP/1.2\r\nHost: h\r\n\r\n") == 505);
}

TEST_CASE("request head: a copy of the head keeps its views", "[http][request]") {
  std::string a = "GET http://b.com/p?q HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n";
  request_head h;
  REQUIRE(parse_request_head(a, {}, h).what == head_parse::done);
  std::string copy = a;
  h.rebase(a.data(), copy.data());
  a.assign(a.size(), '#');  // the original is gone
  CHECK(h.method == "GET");
  CHECK(h.target_parts.authority == "b.com");
  CHECK(h.target_parts.origin == "/p?q");
  CHECK(h.host == "x");
  CHECK(h.find("x-a") == "1");
  CHECK(h.fields[1].name == "X-A");
}

TEST_CASE("request head: stricter than the grammar where upstreams could disagree",
          "[http][request]") {
  // Methods: case-sensitive, and none registered in lower case; a bounded length.
  CHECK(status("get / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("Get / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n") == 400);  // '*' only with OPTIONS
  CHECK(status("VERSION-CONTROL / HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status(std::string(32, 'A') + " / HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status(std::string(33, 'A') + " / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  // A method that never ends is refused as such before the line limit (414) is reached.
  CHECK(status(std::string(100000, 'A')) == 400);
  CHECK(status(std::string(40, 'A')) == 400);
  CHECK(status(std::string(20, 'A')) == 1);  // still incomplete: need more
  CHECK(status("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n") == 405);
  // CONNECT: 405 for host:port, 400 for anything else (RFC 9110 §9.3.6).
  CHECK(status("CONNECT a.com: HTTP/1.1\r\nHost: a.com:\r\n\r\n") == 400);
  CHECK(status("CONNECT a.com:443x HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("CONNECT a.com:123456 HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("CONNECT /path HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("CONNECT a.com HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET a.com:443 HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  // Targets: ASCII only, no fragment, no backslash, no encoded NUL/CR/LF.
  CHECK(status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /\xc0\xaf HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /p#frag HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET http://a/p#frag HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /p\\f HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /p%00.html HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /p%0d%0aX:%20y HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /p%0A HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status("GET /p%0 HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status("GET /p%09%20%2F%c3%a9?q=%01 HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status("GET /a{b}|c^~ HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  // Content-Length: one number, no leading zero, no tab around it.
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 03\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") == 0);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t3\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\t\r\n\r\n") == 400);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  3 \r\n\r\n") == 0);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n") == 400);
  // Expect: only 100-continue.
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n") == 417);
  CHECK(status("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n") ==
        0);
}

TEST_CASE("request head: field names with an underscore", "[http][request]") {
  const std::string req =
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent_Length: 99\r\nX-A: 1\r\n\r\n";
  sluice::config::listener_limits limits;
  request_head h;
  REQUIRE(parse_request_head(req, limits, h).what == head_parse::done);
  REQUIRE(h.fields.size() == 4);
  CHECK(h.fields[2].what == head_field::kind::underscored);
  CHECK(h.fields[3].what == head_field::kind::end_to_end);
  CHECK(h.length == 2);  // the underscored field says nothing about framing
  limits.underscores = sluice::config::listener_limits::underscore_action::reject;
  auto v = parse_request_head(req, limits, h);
  CHECK(v.what == head_parse::malformed);
  CHECK(v.status == 400);
}
