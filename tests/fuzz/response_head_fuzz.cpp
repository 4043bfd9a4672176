// Fuzz target: parse_response_head and what the proxy builds from its result (the status line
// and the end-to-end fields sent downstream).
//
// Input: one mode byte, then the bytes an upstream sent.
//   mode & 1:       the request was HEAD
//   (mode >> 1) & 3: limit: response_header_limit, 16, 300, or none (SIZE_MAX)
//   mode >> 3:      where the bytes are split, for inputs too long to try every prefix
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "sluice/http/message_head.hpp"

namespace {

using sluice::http::body_framing;
using sluice::http::head_field;
using sluice::http::head_parse;
using sluice::http::response_head;

bool inside(std::string_view v, const char* base, std::size_t size) {
  return v.empty() || (v.data() >= base && v.data() + v.size() <= base + size);
}

std::size_t limit_for(std::uint8_t mode) {
  switch ((mode >> 1) & 3) {
    case 1: return 16;
    case 2: return 300;
    case 3: return SIZE_MAX;
    default: return sluice::http::response_header_limit;
  }
}

void check_one(std::string_view buf, std::size_t limit, bool head_request, head_parse r,
               const response_head& h, const char* error) {
  if (r == head_parse::malformed) {
    FUZZ_CHECK(error != nullptr && error[0] != '\0');
    return;
  }
  if (r != head_parse::done) return;
  const char* base = buf.data();
  FUZZ_CHECK(h.size > 0 && h.size <= buf.size() && h.size <= limit);
  FUZZ_CHECK(buf.substr(0, h.size).ends_with("\r\n\r\n"));
  FUZZ_CHECK(h.status >= 100 && h.status <= 999);
  FUZZ_CHECK(h.version == 10 || h.version == 11);
  FUZZ_CHECK(h.status_line_end >= 14 && h.status_line_end < h.size);
  FUZZ_CHECK(inside(h.reason, base, h.status_line_end));
  FUZZ_CHECK(inside(h.upgrade, base, h.size));
  std::uint32_t prev_end = h.status_line_end;
  for (const auto& f : h.fields) {
    FUZZ_CHECK(f.line_begin >= prev_end && f.line_begin < f.line_end && f.line_end <= h.size);
    FUZZ_CHECK(!f.name.empty() && f.name.data() == base + f.line_begin);
    FUZZ_CHECK(inside(f.value, base + f.line_begin, f.line_end - f.line_begin));
    // Response fields are never given the request-only kinds.
    FUZZ_CHECK(f.what == head_field::kind::end_to_end ||
               f.what == head_field::kind::content_length ||
               f.what == head_field::kind::hop_by_hop);
    prev_end = f.line_end;
  }
  if (head_request || h.status < 200 || h.status == 204 || h.status == 304)
    FUZZ_CHECK(h.framing == body_framing::none);
  if (h.framing == body_framing::length) FUZZ_CHECK(h.has_content_length && h.length > 0);
  if (h.keep_alive) FUZZ_CHECK(h.framing != body_framing::eof);

  // What goes downstream: a status line, then at most the field lines that came.
  std::string out;
  sluice::http::append_status_line(out, buf, h);
  FUZZ_CHECK(out.starts_with("HTTP/1.1 ") && out.ends_with("\r\n"));
  FUZZ_CHECK(out.find('\n') == out.size() - 1);  // one line: no splitting
  for (bool drop : {false, true}) {
    std::string fields;
    sluice::http::append_end_to_end_fields(fields, buf, h, drop);
    FUZZ_CHECK(fields.size() <= h.size - h.status_line_end);
    FUZZ_CHECK(fields.empty() || fields.ends_with("\r\n"));
  }
  for (const auto& f : h.fields) (void)sluice::http::named_by_connection(h, f);
  (void)sluice::http::reason_phrase(h.status);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const bool head_request = mode & 1;
  const std::size_t limit = limit_for(mode);
  const std::vector<char> bytes(data + 1, data + size);
  const std::string_view all(bytes.data(), bytes.size());

  response_head full;
  const char* full_error = nullptr;
  const head_parse whole = parse_response_head(all, limit, head_request, full, &full_error);
  check_one(all, limit, head_request, whole, full, full_error);

  const std::vector<std::size_t> cuts = prefix_cuts(all.size(), mode, full.size);
  response_head part;
  for (std::size_t k : cuts) {
    const std::vector<char> prefix_bytes(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
    const std::string_view prefix(prefix_bytes.data(), prefix_bytes.size());
    const char* error = nullptr;
    const head_parse r = parse_response_head(prefix, limit, head_request, part, &error);
    check_one(prefix, limit, head_request, r, part, error);
    if (r == head_parse::need_more) continue;
    // An upstream's bytes arrive in any pieces: the first verdict that is not need_more is the
    // one the whole input gets.
    FUZZ_CHECK(r == whole);
    if (r == head_parse::done) {
      FUZZ_CHECK(part.size == full.size && part.status == full.status);
      FUZZ_CHECK(part.framing == full.framing && part.length == full.length);
      FUZZ_CHECK(part.keep_alive == full.keep_alive && part.fields.size() == full.fields.size());
    }
  }
  return 0;
}
