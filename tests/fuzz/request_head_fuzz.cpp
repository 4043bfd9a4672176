// Fuzz target: parse_request_head, fed the way a session feeds it (the same bytes plus new ones
// while it answers need_more).
//
// Input: one mode byte, then the bytes a client sent.
//   mode & 3:  limits: 0, 3 the defaults; 1 small ones; 2 the configuration's minimums, or huge
//   mode & 4:  headers_with_underscores: reject
//   mode >> 3: where the bytes are split, for inputs too long to try every prefix
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "sluice/config/config.hpp"
#include "sluice/http/message_head.hpp"

namespace {

using sluice::config::listener_limits;
using sluice::http::body_framing;
using sluice::http::head_field;
using sluice::http::head_parse;
using sluice::http::request_head;
using sluice::http::request_verdict;

bool inside(std::string_view v, const char* base, std::size_t size) {
  return v.empty() || (v.data() >= base && v.data() + v.size() <= base + size);
}

listener_limits limits_for(std::uint8_t mode) {
  listener_limits l;
  switch (mode & 3) {
    case 1:
      l.max_request_line = 24;
      l.max_header_bytes = 96;
      l.max_headers = 3;
      l.max_body = 10;
      break;
    case 2:
      if (mode & 8) {  // the smallest the configuration accepts
        l.max_request_line = 16;
        l.max_header_bytes = 64;
        l.max_headers = 1;
        l.max_body = 1;
      } else {
        l.max_request_line = UINT32_MAX;
        l.max_header_bytes = UINT32_MAX;
        l.max_headers = UINT32_MAX;
        l.max_body = UINT64_MAX;
      }
      break;
    default: break;
  }
  if (mode & 4) l.underscores = listener_limits::underscore_action::reject;
  return l;
}

// What holds for any verdict on `buf`.
void check_one(std::string_view buf, const listener_limits& limits, const request_verdict& v,
               const request_head& h) {
  if (v.what == head_parse::malformed) {
    FUZZ_CHECK(v.status == 400 || v.status == 405 || v.status == 413 || v.status == 414 ||
               v.status == 417 || v.status == 431 || v.status == 505);
    FUZZ_CHECK(v.reason != nullptr && v.reason[0] != '\0');
    return;
  }
  if (v.what != head_parse::done) return;
  const char* base = buf.data();
  FUZZ_CHECK(h.size > 0 && h.size <= buf.size());
  // Up to four leading empty lines, then at most max_header_bytes.
  FUZZ_CHECK(h.size <= 8 + std::size_t{limits.max_header_bytes});
  FUZZ_CHECK(buf.substr(0, h.size).ends_with("\r\n\r\n"));
  FUZZ_CHECK(h.version == 10 || h.version == 11);
  FUZZ_CHECK(!h.method.empty() && h.method.size() <= 32);
  FUZZ_CHECK(!h.target.empty());
  FUZZ_CHECK(h.fields.size() <= limits.max_headers);
  for (auto view : {h.method, h.target, h.target_parts.authority, h.host, h.upgrade_value,
                    h.expect})
    FUZZ_CHECK(inside(view, base, h.size));
  // An absolute-form target without a path is forwarded as "/", a constant.
  for (auto view : {h.target_parts.origin, h.target_parts.path})
    FUZZ_CHECK(inside(view, base, h.size) || view == "/");
  FUZZ_CHECK(h.method != "TRACE" && h.method != "CONNECT");
  std::size_t hosts = 0;
  for (const auto& f : h.fields) hosts += f.what == head_field::kind::host;
  FUZZ_CHECK(hosts == (h.version == 11 ? 1u : hosts) && hosts <= 1);
  std::uint32_t prev_end = 0;
  for (const auto& f : h.fields) {
    FUZZ_CHECK(f.line_begin >= prev_end && f.line_begin < f.line_end && f.line_end <= h.size);
    FUZZ_CHECK(!f.name.empty() && f.name.data() == base + f.line_begin);
    FUZZ_CHECK(inside(f.value, base + f.line_begin, f.line_end - f.line_begin));
    FUZZ_CHECK(base[f.line_end - 1] == '\n' && base[f.line_end - 2] == '\r');
    if (limits.underscores == listener_limits::underscore_action::reject)
      FUZZ_CHECK(f.what != head_field::kind::underscored);
    prev_end = f.line_end;
  }
  switch (h.framing) {
    case body_framing::length:
      FUZZ_CHECK(h.has_content_length && h.length > 0);
      FUZZ_CHECK(limits.max_body == 0 || h.length <= limits.max_body);
      break;
    case body_framing::chunked: FUZZ_CHECK(!h.has_content_length && h.version == 11); break;
    case body_framing::none: FUZZ_CHECK(!h.has_content_length || h.length == 0); break;
    case body_framing::eof: FUZZ_CHECK(false); break;  // never for a request
  }
  if (h.upgrade) FUZZ_CHECK(!h.upgrade_value.empty());
  if (!h.expect.empty()) FUZZ_CHECK(h.expect.size() == 12);  // 100-continue, any case

  // Every field line, copied in runs, is the field section as it came.
  if (!h.fields.empty()) {
    std::string lines;
    sluice::http::append_field_lines(lines, buf, h.fields, [](const head_field&) { return true; });
    auto first = h.fields.front().line_begin, last = h.fields.back().line_end;
    FUZZ_CHECK(lines == buf.substr(first, last - first));
  }

  // The head copied elsewhere: rebase moves every view along.
  std::string copy(buf.substr(0, h.size));
  request_head moved = h;
  moved.rebase(base, copy.data());
  FUZZ_CHECK(moved.method == h.method && moved.target == h.target && moved.host == h.host);
  FUZZ_CHECK(inside(moved.method, copy.data(), copy.size()));
  FUZZ_CHECK(inside(moved.target, copy.data(), copy.size()));
  FUZZ_CHECK(inside(moved.target_parts.path, copy.data(), copy.size()) ||
             moved.target_parts.path == "/");
  FUZZ_CHECK(moved.target_parts.origin == h.target_parts.origin);
  for (std::size_t i = 0; i < h.fields.size(); ++i) {
    FUZZ_CHECK(moved.fields[i].name == h.fields[i].name);
    FUZZ_CHECK(moved.fields[i].value == h.fields[i].value);
    FUZZ_CHECK(inside(moved.fields[i].name, copy.data(), copy.size()));
  }
}

// The same head, parsed from a prefix once complete, must give the same answer.
void check_same(const request_head& a, const request_head& b) {
  FUZZ_CHECK(a.size == b.size && a.version == b.version && a.framing == b.framing);
  FUZZ_CHECK(a.length == b.length && a.keep_alive == b.keep_alive && a.upgrade == b.upgrade);
  FUZZ_CHECK(a.method == b.method && a.target == b.target && a.host == b.host);
  FUZZ_CHECK(a.fields.size() == b.fields.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  // The parser reads no further than the view: a copy of exactly that size lets ASan see it.
  const std::vector<char> bytes(data + 1, data + size);
  const std::string_view all(bytes.data(), bytes.size());
  const listener_limits limits = limits_for(mode);

  request_head full;
  const request_verdict whole = parse_request_head(all, limits, full);
  check_one(all, limits, whole, full);

  // A session stops at the first verdict that is not need_more; the bytes after that one
  // must not change it.
  const std::vector<std::size_t> cuts = prefix_cuts(all.size(), mode, full.size);
  request_head part;
  for (std::size_t k : cuts) {
    if (k > all.size()) continue;
    // Its own allocation again, so that a read past the prefix is caught.
    const std::vector<char> prefix_bytes(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
    const std::string_view prefix(prefix_bytes.data(), prefix_bytes.size());
    const request_verdict v = parse_request_head(prefix, limits, part);
    check_one(prefix, limits, v, part);
    if (v.what == head_parse::need_more) continue;
    FUZZ_CHECK(v.what == whole.what);
    if (v.what == head_parse::done) {
      check_same(part, full);
    }
  }
  return 0;
}
