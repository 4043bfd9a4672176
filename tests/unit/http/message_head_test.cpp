#include "sluice/http/message_head.hpp"

#include <cstring>
#include <memory>
#include <string>

#include <catch2/catch.hpp>


using namespace sluice::http;
using namespace std::string_literals;

namespace {

constexpr std::size_t limit = 64 * 1024;

head_parse parse(const std::string& bytes, response_head& h, bool head_request = false,
                 std::size_t lim = limit) {
  return parse_response_head(bytes, lim, head_request, h);
}

std::string error_of(const std::string& bytes) {
  response_head h;
  const char* error = "";
  auto r = parse_response_head(bytes, limit, false, h, &error);
  return r == head_parse::malformed ? std::string(error) : std::string("accepted");
}

// The downstream head as the HTTP/1.1 proxy builds it, minus its own framing fields.
std::string forwarded(const std::string& bytes, bool drop_content_length = true) {
  response_head h;
  REQUIRE(parse(bytes, h) == head_parse::done);
  std::string out;
  append_status_line(out, bytes, h);
  append_end_to_end_fields(out, bytes, h, drop_content_length);
  return out;
}

}  // namespace

TEST_CASE("response head: a plain response is parsed with its fields and framing") {
  std::string raw =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend:  a \r\n"
      "Content-Length: 14\r\n\r\nhello from a\r\n";
  response_head h;
  REQUIRE(parse(raw, h) == head_parse::done);
  CHECK(h.status == 200);
  CHECK(h.version == 11);
  CHECK(h.reason == "OK");
  CHECK(h.size == raw.size() - 14);
  CHECK(h.framing == body_framing::length);
  CHECK(h.length == 14);
  CHECK(h.keep_alive);
  REQUIRE(h.fields.size() == 3);
  CHECK(h.fields[0].name == "Content-Type");
  CHECK(h.fields[0].value == "text/plain");
  CHECK(h.fields[1].value == "a");  // surrounding whitespace trimmed
  CHECK(h.fields[2].what == head_field::kind::content_length);
  CHECK(raw.substr(h.fields[1].line_begin, h.fields[1].line_end - h.fields[1].line_begin) ==
        "X-Backend:  a \r\n");
}

TEST_CASE("response head: every prefix of a head asks for more, byte by byte") {
  std::string raw =
      "HTTP/1.1 404 Not Found\r\nServer: x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (std::size_t n = 0; n < raw.size(); ++n) {
    response_head h;
    INFO("prefix " << n);
    CHECK(parse(raw.substr(0, n), h) == head_parse::need_more);
  }
  response_head h;
  REQUIRE(parse(raw, h) == head_parse::done);
  CHECK(h.framing == body_framing::chunked);
  CHECK(h.fields.size() == 4);
}

TEST_CASE("response head: an empty view with no data pointer asks for more") {
  // Found by tests/fuzz under UBSan: memchr and memcmp were given a null pointer.
  response_head h;
  CHECK(parse_response_head(std::string_view{}, response_header_limit, false, h) ==
        head_parse::need_more);
}

TEST_CASE("response head: framing follows RFC 9112 section 6.3") {
  response_head h;
  SECTION("no framing fields: until the close, and the connection is not reusable") {
    REQUIRE(parse("HTTP/1.1 200 OK\r\n\r\n", h) == head_parse::done);
    CHECK(h.framing == body_framing::eof);
    CHECK_FALSE(h.keep_alive);
  }
  SECTION("204, 304 and 1xx have no body whatever the fields say") {
    for (const char* s : {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                          "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                          "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\n\r\n"}) {
      REQUIRE(parse(s, h) == head_parse::done);
      CHECK(h.framing == body_framing::none);
      CHECK(h.keep_alive);
    }
  }
  SECTION("a HEAD request's response has no body") {
    REQUIRE(parse("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", h, true) ==
            head_parse::done);
    CHECK(h.framing == body_framing::none);
    CHECK(h.length == 99);
  }
  SECTION("Content-Length: 0 is no body") {
    REQUIRE(parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", h) == head_parse::done);
    CHECK(h.framing == body_framing::none);
  }
  SECTION("a list of equal lengths, and repeated equal fields, are one length") {
    REQUIRE(parse("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n", h) ==
            head_parse::done);
    CHECK(h.framing == body_framing::length);
    CHECK(h.length == 7);
  }
  SECTION("transfer-encoding is matched case-insensitively") {
    REQUIRE(parse("HTTP/1.1 200 OK\r\ntransfer-ENCODING:  Chunked \r\n\r\n", h) ==
            head_parse::done);
    CHECK(h.framing == body_framing::chunked);
    CHECK(h.keep_alive);
  }
}

TEST_CASE("response head: keep-alive of the upstream connection") {
  response_head h;
  REQUIRE(parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", h) ==
          head_parse::done);
  CHECK_FALSE(h.keep_alive);
  REQUIRE(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", h) == head_parse::done);
  CHECK(h.version == 10);
  CHECK_FALSE(h.keep_alive);
  REQUIRE(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n", h) ==
          head_parse::done);
  CHECK(h.keep_alive);
  REQUIRE(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\n",
                h) == head_parse::done);
  CHECK_FALSE(h.keep_alive);
  const std::string switching =  // kept alive: the head's views point into it
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  REQUIRE(parse(switching, h) == head_parse::done);
  CHECK(h.connection_upgrade);
  CHECK(h.upgrade == "websocket");
}

TEST_CASE("response head: hostile and broken heads are refused with a reason") {
  CHECK(error_of("HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n") == "bare LF in the status line");
  CHECK(error_of("HTTP/1.1 200 OK\r\nA: b\n\r\n") == "bare LF in the head");
  CHECK(error_of("HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n") == "obsolete line folding");
  CHECK(error_of("HTTP/1.1 200 OK\r\nA: b\r\n\tfolded") == "obsolete line folding");
  CHECK(error_of("HTTP/1.1 200 OK\r\nBad Name: b\r\n\r\n") == "bad field name");
  CHECK(error_of("HTTP/1.1 200 OK\r\nName : b\r\n\r\n") == "bad field name");
  CHECK(error_of("HTTP/1.1 200 OK\r\n: b\r\n\r\n") == "bad field name");
  CHECK(error_of("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n") == "bad field name");
  CHECK(error_of("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n"s) ==
        "bad character in a field value");
  CHECK(error_of("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n") == "bad character in a field value");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n") == "bad Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n") == "bad Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n") == "bad Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n") ==
        "bad Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n") == "bad Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") ==
        "differing Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n") ==
        "unsupported Transfer-Encoding");
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") ==
        "unsupported Transfer-Encoding");
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n") == "unsupported Transfer-Encoding");
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") ==
        "Transfer-Encoding with Content-Length");
  CHECK(error_of("HTTP/1.1 200 OK\r\nConnection: a b\r\n\r\n") == "bad Connection value");
  CHECK(error_of("HTTP/2.0 200 OK\r\n\r\n") == "bad status line");
  CHECK(error_of("ICY 200 OK\r\n\r\n") == "bad status line");
  CHECK(error_of("HTTX") == "bad status line");
  CHECK(error_of("HTTP/1.1 20x OK\r\n\r\n") == "bad status code");
  CHECK(error_of("HTTP/1.1 099 Low\r\n\r\n") == "bad status code");
  CHECK(error_of("HTTP/1.1 200OK\r\n\r\n") == "bad status line");
  CHECK(error_of("HTTP/1.1 200 O\x01K\r\n\r\n") == "bad reason phrase");
  CHECK(error_of("HTTP/1.1 200\r\n\r\n") == "accepted");  // an empty reason may lose its SP
}

TEST_CASE("response head: the size limit holds for complete and incomplete heads") {
  std::string raw = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(200, 'v') + "\r\n\r\n";
  response_head h;
  CHECK(parse(raw, h, false, raw.size()) == head_parse::done);
  CHECK(parse(raw, h, false, raw.size() - 1) == head_parse::malformed);
  // Still incomplete when the limit is reached: refused instead of waiting for more.
  CHECK(parse(raw.substr(0, 100), h, false, 100) == head_parse::malformed);
  CHECK(parse(raw.substr(0, 99), h, false, 100) == head_parse::need_more);
}

TEST_CASE("response head: the downstream head keeps end-to-end lines as they came") {
  SECTION("hop-by-hop fields and the re-framed Content-Length are left out") {
    CHECK(forwarded("HTTP/1.1 200 OK\r\nA: 1\r\nConnection: keep-alive\r\nKeep-Alive: t=5\r\n"
                    "B:2\r\nContent-Length: 3\r\nSet-Cookie: x=1\r\nSet-Cookie: y=2\r\n\r\n") ==
          "HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nSet-Cookie: x=1\r\nSet-Cookie: y=2\r\n");
  }
  SECTION("Content-Length stays when the proxy does not re-frame") {
    CHECK(forwarded("HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 3\r\n\r\n",
                    false) == "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 3\r\n");
  }
  SECTION("fields named by Connection are hop-by-hop too") {
    CHECK(forwarded("HTTP/1.1 200 OK\r\nX-Secret: s\r\nA: 1\r\nConnection: x-secret, close\r\n"
                    "Transfer-Encoding: chunked\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\n"
                    "Proxy-Connection: x\r\n\r\n") == "HTTP/1.1 200 OK\r\nA: 1\r\n");
  }
  SECTION("the status line is rewritten to HTTP/1.1 with a reason") {
    CHECK(forwarded("HTTP/1.0 200 Fine\r\nContent-Length: 1\r\n\r\n") == "HTTP/1.1 200 Fine\r\n");
    CHECK(forwarded("HTTP/1.1 503\r\nContent-Length: 1\r\n\r\n") ==
          "HTTP/1.1 503 Service Unavailable\r\n");
    CHECK(forwarded("HTTP/1.1 599 \r\nContent-Length: 1\r\n\r\n") == "HTTP/1.1 599 Unknown\r\n");
  }
}

TEST_CASE("response head: reset keeps small field storage and drops large") {
  response_head h;
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 100; ++i) many += "F" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  REQUIRE(parse(many, h) == head_parse::done);
  CHECK(h.fields.size() == 100);
  h.reset();
  CHECK(h.fields.capacity() == 0);
  REQUIRE(parse("HTTP/1.1 200 OK\r\nA: 1\r\n\r\n", h) == head_parse::done);
  h.reset();
  CHECK(h.fields.empty());
  CHECK(h.fields.capacity() > 0);
}

TEST_CASE("message heads: mutated heads are refused or parsed, never read out of bounds") {
  // A deterministic stream of damaged heads (bytes flipped, cut, duplicated, CR/LF/NUL/SP
  // inserted): every verdict must keep its views inside the buffer, and re-parsing any prefix
  // must not claim a complete head longer than that prefix. Run under ASan in CI.
  const std::string seeds[] = {
      "GET /a?b=c HTTP/1.1\r\nHost: h:80\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n"
      "Content-Length: 3\r\nExpect: 100-continue\r\nForwarded: for=1.2.3.4\r\n\r\nabc",
      "POST http://h/p HTTP/1.0\r\nTransfer-Encoding: chunked\r\nUpgrade: ws\r\n\r\n",
      "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\n",
      "HTTP/1.0 101 Switching\r\nUpgrade: x\r\nConnection: upgrade\r\nTE: trailers\r\n\r\n",
  };
  std::uint64_t rng = 0x9e3779b97f4a7c15ULL;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  const char specials[] = {'\r', '\n', '\0', ' ', '\t', ':', ',', '\x7f', '\xff', 'a'};
  sluice::config::listener_limits limits;
  limits.max_header_bytes = 512;
  limits.max_request_line = 128;
  limits.max_headers = 8;
  std::size_t done = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s = seeds[next() % std::size(seeds)];
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const std::size_t at = next() % s.size();
      switch (next() % 4) {
        case 0: s[at] = specials[next() % std::size(specials)]; break;
        case 1: s.insert(at, 1, specials[next() % std::size(specials)]); break;
        case 2: s.erase(at, 1 + next() % 8); break;
        default: s.insert(at, s.substr(at, next() % 40)); break;
      }
    }
    // A heap copy of exactly the bytes: ASan sees any read past them.
    auto buf = std::make_unique<char[]>(s.size() + 1);
    std::memcpy(buf.get(), s.data(), s.size());
    std::string_view bytes(buf.get(), s.size());
    auto inside = [&](std::string_view v) {
      return v.empty() || (v.data() >= bytes.data() && v.data() + v.size() <= bytes.data() + bytes.size());
    };
    request_head rq;
    auto v = parse_request_head(bytes, limits, rq);
    if (v.what == head_parse::done) {
      ++done;
      REQUIRE(rq.size <= bytes.size());
      CHECK(inside(rq.method));
      CHECK(inside(rq.target));
      for (const auto& f : rq.fields) {
        CHECK(inside(f.name));
        CHECK(inside(f.value));
        CHECK(f.line_end <= rq.size);
      }
    } else if (v.what == head_parse::malformed) {
      ++refused;
      CHECK(v.status >= 400);
    }
    response_head rs;
    auto r = parse_response_head(bytes, 512, (next() & 1) != 0, rs);
    if (r == head_parse::done) {
      ++done;
      REQUIRE(rs.size <= bytes.size());
      for (const auto& f : rs.fields) {
        CHECK(inside(f.name));
        CHECK(inside(f.value));
      }
      std::string out;
      append_status_line(out, bytes, rs);
      append_end_to_end_fields(out, bytes, rs, true);
      CHECK(out.size() <= bytes.size() + 64);
    }
    // A prefix never holds a longer complete head.
    std::string_view prefix = bytes.substr(0, next() % (bytes.size() + 1));
    request_head rp;
    if (parse_request_head(prefix, limits, rp).what == head_parse::done)
      CHECK(rp.size <= prefix.size());
  }
  // The mutations leave both kinds of verdict common (the test exercises both paths).
  CHECK(done > 1000);
  CHECK(refused > 1000);
}
