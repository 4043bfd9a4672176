#include "http/chunked_decoder.hpp"

#include <string>
#include <string_view>

#include <catch2/catch.hpp>

using sluice::http::chunked_decoder;
using error = chunked_decoder::error;

namespace {

struct outcome {
  std::string body;
  std::size_t consumed = 0;
  bool done = false;
  error why = error::none;
};

// Feeds `wire` in pieces of `step` bytes (the rest of each piece is fed again with the next
// one, as a read buffer keeps unconsumed bytes), with an output buffer of `out_size` bytes.
outcome decode(std::string_view wire, std::size_t step = 1 << 20, std::size_t out_size = 64,
               chunked_decoder::limits limits = {}) {
  chunked_decoder d(limits);
  outcome o;
  std::string pending;
  std::string out(out_size, '\0');
  std::size_t fed = 0;
  for (int rounds = 0; rounds < 100000 && !d.done() && !d.failed(); ++rounds) {
    if (fed < wire.size()) {
      auto n = std::min(step, wire.size() - fed);
      pending.append(wire.substr(fed, n));
      fed += n;
    }
    std::size_t produced = 0;
    auto used = d.decode(pending, out.data(), out.size(), produced);
    o.body.append(out.data(), produced);
    o.consumed += used;
    pending.erase(0, used);
    if (used == 0 && produced == 0 && fed == wire.size()) break;  // starved
  }
  o.done = d.done();
  o.why = d.why();
  return o;
}

}  // namespace

TEST_CASE("chunked decoder: bodies, whatever the piece sizes", "[http][chunked]") {
  const std::string wire =
      "5\r\nhello\r\n1A;name=value;q=\"a \\\" b\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
      "0\r\nX-Trailer: yes\r\n\r\nGET /next";
  for (std::size_t step : {1u, 2u, 3u, 7u, 64u, 4096u}) {
    for (std::size_t out : {1u, 5u, 64u}) {
      INFO("step " << step << " out " << out);
      auto o = decode(wire, step, out);
      CHECK(o.why == error::none);
      CHECK(o.done);
      CHECK(o.body == "helloabcdefghijklmnopqrstuvwxyz");
      // The bytes after the body (the next request) are left alone.
      CHECK(o.consumed == wire.size() - std::string_view("GET /next").size());
    }
  }
}

TEST_CASE("chunked decoder: sizes", "[http][chunked]") {
  CHECK(decode("00000\r\n\r\n").done);
  CHECK(decode("a\r\n0123456789\r\n0\r\n\r\n").body == "0123456789");
  CHECK(decode("A\r\n0123456789\r\n0\r\n\r\n").body == "0123456789");
  CHECK(decode("\r\n\r\n").why == error::bad_size);             // no digit
  CHECK(decode("+5\r\nhello\r\n0\r\n\r\n").why == error::bad_size);
  CHECK(decode("0x5\r\nhello\r\n0\r\n\r\n").why == error::bad_size);
  CHECK(decode(" 5\r\nhello\r\n0\r\n\r\n").why == error::bad_size);
  CHECK(decode("5 \r\nhello\r\n0\r\n\r\n").why == error::bad_extension);  // BWS not before ';'
  CHECK(decode("5g\r\nhello\r\n0\r\n\r\n").why == error::bad_size);
  CHECK(decode("10000000000000000\r\n").why == error::bad_size);  // 2^64
  CHECK(decode("fffffffffffffffff\r\n").why == error::bad_size);
  // The largest size is taken (and then waits for its data).
  auto o = decode("ffffffffffffffff\r\nabc");
  CHECK(o.why == error::none);
  CHECK(o.body == "abc");
}

TEST_CASE("chunked decoder: extensions follow the grammar", "[http][chunked]") {
  CHECK(decode("5;a\r\nhello\r\n0\r\n\r\n").done);
  CHECK(decode("5 ; a = b\r\nhello\r\n0\r\n\r\n").done);
  CHECK(decode("5;a=\"q;\\\"x\"\r\nhello\r\n0;last\r\n\r\n").done);
  CHECK(decode("5;\r\nhello\r\n0\r\n\r\n").why == error::bad_extension);
  CHECK(decode("5;=x\r\nhello\r\n0\r\n\r\n").why == error::bad_extension);
  CHECK(decode("5;a=\r\nhello\r\n0\r\n\r\n").why == error::bad_extension);
  CHECK(decode("5;a=\"open\r\nhello\r\n0\r\n\r\n").why == error::bad_extension);
  CHECK(decode("5;a b\r\nhello\r\n0\r\n\r\n").why == error::bad_extension);
  CHECK(decode(std::string("5;a=\x01\r\nhello\r\n0\r\n\r\n")).why == error::bad_extension);
}

TEST_CASE("chunked decoder: CRLF and nothing else ends a line", "[http][chunked]") {
  for (std::size_t step : {1u, 4096u}) {
    INFO("step " << step);
    CHECK(decode("5\nhello\r\n0\r\n\r\n", step).why == error::bad_line_end);
    CHECK(decode("5\r\nhello\n0\r\n\r\n", step).why == error::bad_line_end);
    CHECK(decode("5\r\nhelloX\r\n0\r\n\r\n", step).why == error::bad_line_end);
    CHECK(decode("5\r\nhello\r\r\n0\r\n\r\n", step).why == error::bad_line_end);
    CHECK(decode("5\rX\nhello\r\n0\r\n\r\n", step).why == error::bad_line_end);
    CHECK(decode("0\n\r\n", step).why == error::bad_line_end);
    // A bare LF ending the trailer section is refused at once (it used to wait for a CRLF
    // CRLF that never came).
    auto o = decode("5\r\nhello\r\n0\r\n\n", step);
    CHECK(o.why == error::bad_line_end);
    CHECK_FALSE(o.done);
    CHECK(decode("0\r\nX: a\nb\r\n\r\n", step).why == error::bad_line_end);
    CHECK(decode("0\r\nX: a\r\n\n", step).why == error::bad_line_end);
  }
}

TEST_CASE("chunked decoder: trailer fields are checked", "[http][chunked]") {
  CHECK(decode("0\r\nA: 1\r\nB:\r\n\r\n").done);
  CHECK(decode("0\r\nA : 1\r\n\r\n").why == error::bad_trailer);  // space before the colon
  CHECK(decode("0\r\n: 1\r\n\r\n").why == error::bad_trailer);
  CHECK(decode("0\r\nNoColon\r\n\r\n").why == error::bad_trailer);
  CHECK(decode("0\r\nA: 1\r\n folded\r\n\r\n").why == error::bad_trailer);  // obs-fold
  CHECK(decode(std::string("0\r\nA: 1\0x\r\n\r\n", 13)).why == error::bad_trailer);
}

TEST_CASE("chunked decoder: limits", "[http][chunked]") {
  chunked_decoder::limits l;
  l.max_line = 32;
  l.max_trailers = 40;
  l.max_body = 10;
  for (std::size_t step : {1u, 4096u}) {
    INFO("step " << step);
    CHECK(decode("5;" + std::string(28, 'a') + "\r\nhello\r\n0\r\n\r\n", step, 64, l).done);
    CHECK(decode("5;" + std::string(31, 'a') + "\r\nhello\r\n0\r\n\r\n", step, 64, l).why ==
          error::line_too_long);
    // A line that never ends is cut off at the limit, not buffered on.
    CHECK(decode("5;" + std::string(100000, 'a'), step, 64, l).why == error::line_too_long);
    CHECK(decode("0\r\nA: " + std::string(40, 'v') + "\r\n\r\n", step, 64, l).why ==
          error::trailers_too_large);
    CHECK(decode("a\r\n0123456789\r\n0\r\n\r\n", step, 64, l).done);
    CHECK(decode("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", step, 64, l).why ==
          error::body_too_large);
    CHECK(decode("ffffffffffffffff\r\n", step, 64, l).why == error::body_too_large);
  }
  chunked_decoder d(l);
  std::size_t produced = 0;
  d.decode("b\r\n", nullptr, 0, produced);
  CHECK(d.status() == 413);
  d.reset({});
  d.decode("x\r\n", nullptr, 0, produced);
  CHECK(d.status() == 400);
  CHECK(chunked_decoder::describe(d.why()) == "bad chunk size");
}

TEST_CASE("chunked decoder: trailer fields can be collected", "[http][chunked]") {
  chunked_decoder d;
  std::vector<std::pair<std::string, std::string>> trailers;
  d.collect_trailers(&trailers);
  const std::string wire = "3\r\nabc\r\n0\r\nX-Sum:  12 \r\ngrpc-status: 0\r\nEmpty:\r\n\r\n";
  char out[8];
  std::size_t produced = 0, used = 0;
  for (std::size_t i = 0; i < wire.size() && !d.done(); ++i) {  // one byte at a time
    std::string_view piece(wire.data() + used, i + 1 - used);
    used += d.decode(piece, out, sizeof out, produced);
  }
  REQUIRE(d.done());
  CHECK(trailers == std::vector<std::pair<std::string, std::string>>{
                        {"X-Sum", "12"}, {"grpc-status", "0"}, {"Empty", ""}});
  d.reset({});
  trailers.clear();
  d.decode("0\r\nX: 1\r\n\r\n", out, sizeof out, produced);
  CHECK(d.done());
  CHECK(trailers.empty());  // reset stops collecting
}
