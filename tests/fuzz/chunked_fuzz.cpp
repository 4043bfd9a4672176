// Fuzz target: chunked_decoder, driven the way the proxy drives it (bytes in pieces as they
// arrive, a small output buffer drained between calls), and compared with one call over all the
// bytes at once.
//
// Input: three control bytes, then the body bytes.
//   c0: output buffer size 1 + (c0 & 31), or the whole input when c0 & 0x80
//   c1: piece sizes (a seed; 0 gives pieces of one byte)
//   c2: limits: bit 0 small max_line, bit 1 small max_trailers, bits 2-3 max_body
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "http/chunked_decoder.hpp"

namespace {

using sluice::http::chunked_decoder;
using trailer_list = std::vector<std::pair<std::string, std::string>>;

struct outcome {
  std::string body;
  trailer_list trailers;
  std::size_t consumed = 0;  // bytes of input taken
  bool done = false;
  bool failed = false;
};

chunked_decoder::limits limits_for(std::uint8_t c) {
  chunked_decoder::limits l;
  if (c & 1) l.max_line = 8;
  if (c & 2) l.max_trailers = 24;
  switch ((c >> 2) & 3) {
    case 1: l.max_body = 1; break;
    case 2: l.max_body = 100; break;
    case 3: l.max_body = UINT64_MAX; break;
    default: break;
  }
  return l;
}

void check_state(const chunked_decoder& d) {
  FUZZ_CHECK(!(d.done() && d.failed()));
  if (d.failed()) {
    FUZZ_CHECK(!chunked_decoder::describe(d.why()).empty());
    FUZZ_CHECK(d.status() == 400 || d.status() == 413);
  } else {
    FUZZ_CHECK(chunked_decoder::describe(d.why()).empty());
  }
}

// One call with every byte and room for all of it (the body is never longer than the input).
outcome at_once(std::string_view in, const chunked_decoder::limits& l) {
  outcome o;
  chunked_decoder d(l);
  d.collect_trailers(&o.trailers);
  std::string out(in.size() + 1, '\0');
  std::size_t produced = 0;
  o.consumed = d.decode(in, out.data(), out.size(), produced);
  FUZZ_CHECK(o.consumed <= in.size() && produced <= out.size());
  o.body.assign(out.data(), produced);
  check_state(d);
  // Unless it stopped (end of the body or an error), a call with everything takes everything.
  if (!d.done() && !d.failed()) FUZZ_CHECK(o.consumed == in.size());
  o.done = d.done();
  o.failed = d.failed();
  return o;
}

// The input in pieces; after each one, decode until the decoder asks for more.
outcome in_pieces(std::string_view in, const chunked_decoder::limits& l, std::size_t out_size,
                  std::uint8_t seed) {
  outcome o;
  chunked_decoder d(l);
  d.collect_trailers(&o.trailers);
  std::vector<char> out(out_size);
  std::string pending;  // received, not consumed yet
  std::size_t fed = 0;
  std::uint32_t x = seed;
  // Each call either consumes or produces a byte, or asks for more input: the number of calls
  // is bounded by the input's size. More than that is a decoder that stopped making progress.
  const std::size_t max_calls = 4 * in.size() + 64;
  std::size_t calls = 0;
  while (!d.done() && !d.failed()) {
    if (fed < in.size()) {
      std::size_t n = 1;
      if (seed != 0) {
        x = x * 1103515245u + 12345u;
        n = 1 + (x >> 16) % 17;
      }
      n = std::min(n, in.size() - fed);
      pending.append(in.substr(fed, n));
      fed += n;
    } else if (pending.empty()) {
      break;  // everything fed and taken: the body is incomplete
    }
    for (;;) {
      FUZZ_CHECK(++calls <= max_calls);
      std::size_t produced = 0;
      const std::size_t used = d.decode(pending, out.data(), out.size(), produced);
      FUZZ_CHECK(used <= pending.size());
      FUZZ_CHECK(produced <= out.size());
      check_state(d);
      o.body.append(out.data(), produced);
      pending.erase(0, used);
      o.consumed += used;
      if (d.done() || d.failed()) break;
      if (used == 0 && produced == 0) {
        // Nothing taken and nothing made: only right when there is nothing to take.
        FUZZ_CHECK(pending.empty());
        break;
      }
      if (pending.empty()) break;
    }
  }
  o.done = d.done();
  o.failed = d.failed();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t c0 = data[0], c1 = data[1], c2 = data[2];
  const std::vector<char> bytes(data + 3, data + size);
  const std::string_view in(bytes.data(), bytes.size());
  const chunked_decoder::limits l = limits_for(c2);
  const std::size_t out_size = (c0 & 0x80) ? in.size() + 1 : 1 + (c0 & 31u);

  const outcome one = at_once(in, l);
  const outcome many = in_pieces(in, l, out_size, c1);

  // However the bytes arrive and however small the buffer, the same body and the same end.
  FUZZ_CHECK(one.done == many.done);
  FUZZ_CHECK(one.failed == many.failed);
  FUZZ_CHECK(one.body == many.body);
  FUZZ_CHECK(one.trailers == many.trailers);
  if (one.done) {
    FUZZ_CHECK(one.consumed == many.consumed);
    FUZZ_CHECK(one.consumed <= in.size());
    FUZZ_CHECK(in.substr(0, one.consumed).ends_with("\r\n"));
  }
  if (l.max_body > 0 && !one.failed) FUZZ_CHECK(one.body.size() <= l.max_body);

  // A decoder that is reset starts over: the same input gives the same result.
  chunked_decoder d(l);
  std::string scratch(in.size() + 1, '\0');
  std::size_t produced = 0;
  (void)d.decode(in, scratch.data(), scratch.size(), produced);
  d.reset(l);
  trailer_list trailers;
  d.collect_trailers(&trailers);
  produced = 0;
  const std::size_t used = d.decode(in, scratch.data(), scratch.size(), produced);
  FUZZ_CHECK(d.done() == one.done && d.failed() == one.failed);
  FUZZ_CHECK(std::string_view(scratch.data(), produced) == one.body);
  if (one.done) FUZZ_CHECK(used == one.consumed);
  FUZZ_CHECK(trailers == one.trailers);
  return 0;
}
