#include "http/request_head.hpp"

#include <memory>
#include <string>

#include <catch2/catch.hpp>

using namespace sluice::http;

namespace {

// Keeps the parser (which owns the target the result points into) alive with the result.
struct parsed {
  request_parser p;
  head_result r;
};

// Feeds `bytes` in one go (or byte by byte when `trickle`) and returns the final result.
std::unique_ptr<parsed> parse_keep(const std::string& bytes,
                                   sluice::config::listener_limits limits = {},
                                   bool trickle = false) {
  auto out = std::make_unique<parsed>();
  prepare(out->p, limits);
  if (trickle) {
    for (std::size_t n = 1; n <= bytes.size(); ++n) {
      out->r = feed_head(out->p, std::string_view(bytes).substr(0, n), limits);
      if (out->r.what != head_result::state::need_more) break;
    }
    return out;
  }
  out->r = feed_head(out->p, bytes, limits);
  return out;
}

head_result parse(const std::string& bytes, sluice::config::listener_limits limits = {},
                  bool trickle = false) {
  return parse_keep(bytes, limits, trickle)->r;  // views in the result dangle: status only
}

unsigned status(const std::string& bytes, sluice::config::listener_limits limits = {}) {
  auto r = parse(bytes, limits);
  if (r.what == head_result::state::need_more) return 1;  // "incomplete"
  return r.what == head_result::state::done ? 0 : r.status;
}

}  // namespace

TEST_CASE("request head: a plain GET", "[http][request]") {
  std::string req = "GET /x?y=1 HTTP/1.1\r\nHost: a.com\r\nUser-Agent: t\r\n\r\nNEXT";
  auto k = parse_keep(req);
  auto& r = k->r;
  REQUIRE(r.what == head_result::state::done);
  CHECK(r.head_size == req.size() - 4);
  CHECK(r.target.path == "/x");
  auto t = parse(req, {}, true);
  CHECK(t.what == head_result::state::done);
}

TEST_CASE("request head: incomplete is need_more", "[http][request]") {
  CHECK(status("GET / HTTP/1.1\r\nHost: a\r\n") == 1);
  CHECK(status("GET / HT") == 1);
  CHECK(status("") == 1);
}

TEST_CASE("request head: leading empty lines are tolerated", "[http][request]") {
  std::string req = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  auto r = parse(req);
  REQUIRE(r.what == head_result::state::done);
  CHECK(r.head_size == req.size());
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
  auto& r = k->r;
  REQUIRE(r.what == head_result::state::done);
  CHECK(r.target.form == target_form::absolute);
  CHECK(r.target.authority == "b.com:81");
  CHECK(r.target.origin == "/p?q");
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
    request_parser p;
    prepare(p, {});
    auto r = feed_head(p, all, {});
    REQUIRE(r.what == head_result::state::done);
    std::string_view rest = std::string_view(all).substr(r.head_size);
    char buf[64];
    boost::system::error_code ec;
    while (!rest.empty() && !p.is_done()) {
      p.get().body().data = buf;
      p.get().body().size = sizeof buf;
      auto n = p.put(boost::asio::const_buffer(rest.data(), rest.size()), ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) return std::string("error");
      rest.remove_prefix(n);
      if (n == 0) break;
    }
    return std::string(p.is_done() ? "done" : "more");
  };
  CHECK(body_status("3\r\nabc\r\n0\r\n\r\n") == "done");
  CHECK(body_status("3;ext=1\r\nabc\r\n0\r\n\r\n") == "done");
  CHECK(body_status("zz\r\nabc\r\n0\r\n\r\n") == "error");
  CHECK(body_status("-3\r\nabc\r\n0\r\n\r\n") == "error");
  CHECK(body_status("3\r\nabcd\r\n0\r\n\r\n") == "error");
  CHECK(body_status("fffffffffffffffffffff\r\n") == "error");
  CHECK(body_status("3 \r\nabc\r\n0\r\n\r\n") != "done");
}

TEST_CASE("request head: the request line arriving before the fields", "[http][request]") {
  // The parser must not swallow a complete request line while the head is still incomplete:
  // the session feeds the head again from its first byte when more arrives.
  std::string head = "GET /a HTTP/1.1\r\nHost: x\r\nX-One: 1\r\n\r\n";
  for (std::size_t split : {17u, 20u, 26u, 30u, 36u}) {
    auto out = std::make_unique<parsed>();
    prepare(out->p, {});
    auto first = feed_head(out->p, std::string_view(head).substr(0, split), {});
    CHECK(first.what == head_result::state::need_more);
    auto r = feed_head(out->p, head, {});
    REQUIRE(r.what == head_result::state::done);
    CHECK(r.head_size == head.size());
    CHECK(out->p.get()["X-One"] == "1");
  }
  CHECK(feedable_head("GET / HTTP/1.1\r\nHost: x\r\n", 100) == 15);
  CHECK(feedable_head("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100) == 27);
  CHECK(feedable_head("GET / HTTP/1.1\nHost: x\n", 100) == 23);       // bare LF: all of it
  CHECK(feedable_head("GET / HTTP/1.1\r\nHost: x\r\n", 10) == 25);    // past the limit
}
