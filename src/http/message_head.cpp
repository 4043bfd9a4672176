#include "sluice/http/message_head.hpp"

#include <array>
#include <charconv>
#include <cstring>

#include "sluice/http/forwarding.hpp"
#include "syntax.hpp"

namespace sluice::http {

namespace {

using syntax::is_ows;
using syntax::is_tchar;
using syntax::is_vchar;
using syntax::trim;

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// memchr that takes an empty range at any pointer: an empty view may have no data at all, and
// memchr(nullptr, c, 0) is undefined.
const char* find_byte(const char* p, char c, std::size_t n) noexcept {
  return n == 0 ? nullptr : static_cast<const char*>(std::memchr(p, c, n));
}

// `name` compared with a lower-case literal of the same length.
bool iequals_lower(std::string_view name, std::string_view lit) noexcept {
  if (name.size() != lit.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (lower(name[i]) != lit[i]) return false;
  return true;
}

enum class special : std::uint8_t {
  none, content_length, transfer_encoding, connection, upgrade, other_hop, date,
  // requests only (classify_request)
  host, expect, forwarded, x_forwarded_for, x_forwarded_other
};

special classify(std::string_view name) noexcept {
  switch (name.size()) {
    case 2: return iequals_lower(name, "te") ? special::other_hop : special::none;
    case 4: return iequals_lower(name, "date") ? special::date : special::none;
    case 7:
      if (iequals_lower(name, "upgrade")) return special::upgrade;
      return iequals_lower(name, "trailer") ? special::other_hop : special::none;
    case 10:
      if (iequals_lower(name, "connection")) return special::connection;
      return iequals_lower(name, "keep-alive") ? special::other_hop : special::none;
    case 14:
      return iequals_lower(name, "content-length") ? special::content_length : special::none;
    case 16:
      return iequals_lower(name, "proxy-connection") ? special::connection : special::none;
    case 17:
      return iequals_lower(name, "transfer-encoding") ? special::transfer_encoding
                                                      : special::none;
    default: return special::none;
  }
}

special classify_request(std::string_view name) noexcept {
  switch (name.size()) {
    case 4: return iequals_lower(name, "host") ? special::host : special::none;
    case 6: return iequals_lower(name, "expect") ? special::expect : special::none;
    case 9: return iequals_lower(name, "forwarded") ? special::forwarded : special::none;
    case 15:
      if (iequals_lower(name, "x-forwarded-for")) return special::x_forwarded_for;
      return special::none;
    case 16:
      if (iequals_lower(name, "x-forwarded-host")) return special::x_forwarded_other;
      return classify(name);
    case 17:
      if (iequals_lower(name, "x-forwarded-proto")) return special::x_forwarded_other;
      return classify(name);
    default: return classify(name);
  }
}

// A Content-Length value: one number or a comma-separated list of equal numbers (RFC 9110
// §8.6 lets a recipient accept the list). False on anything else.
bool parse_content_length(std::string_view v, std::uint64_t& out) noexcept {
  bool any = false;
  std::uint64_t first = 0;
  for (;;) {
    auto comma = v.find(',');
    auto item = trim(v.substr(0, comma));
    if (item.empty()) return false;
    std::uint64_t n = 0;
    for (char c : item) {
      if (c < '0' || c > '9') return false;
      if (n > (UINT64_MAX - 9) / 10) return false;  // absurdly large: refused, not wrapped
      n = n * 10 + static_cast<unsigned>(c - '0');
    }
    if (any && n != first) return false;
    first = n;
    any = true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  out = first;
  return true;
}

head_parse fail(const char** error, const char* what) {
  if (error) *error = what;
  return head_parse::malformed;
}

// What the field-line loop found out about framing and the connection.
struct field_facts {
  bool close = false;
  bool keep_alive_token = false;
  bool connection_upgrade = false;
  bool names_fields = false;
  bool has_content_length = false;
  std::uint64_t length = 0;
  std::size_t transfer_encodings = 0;
  bool chunked = false;
  bool date = false;
  std::string_view upgrade;
};

// Connection options: every element a token (empty elements allowed, RFC 9110 §5.6.1).
bool scan_connection(std::string_view v, field_facts& ff) noexcept {
  for (;;) {
    auto comma = v.find(',');
    auto item = trim(v.substr(0, comma));
    for (char c : item)
      if (!is_tchar(c)) return false;
    if (iequals_lower(item, "close")) ff.close = true;
    else if (iequals_lower(item, "keep-alive")) ff.keep_alive_token = true;
    else if (iequals_lower(item, "upgrade")) ff.connection_upgrade = true;
    else if (!item.empty()) ff.names_fields = true;
    if (comma == std::string_view::npos) return true;
    v.remove_prefix(comma + 1);
  }
}

// A request's framing fields get stricter rules than RFC 9110's grammar: a Content-Length is
// one number with no leading zero (a list, even of equal numbers, or "0200", which an octal
// reader takes for 128, is refused), and neither it nor Transfer-Encoding has a tab around its
// value. What the proxy forwards is its own framing either way; the rules keep an upstream
// that reads the original differently from ever seeing such a request.
// `value` passed parse_content_length already when `length`: only the list and the leading zero
// are left to refuse.
bool strict_framing_value(std::string_view value, const char* after_colon, const char* cr,
                          bool length) noexcept {
  if (std::memchr(after_colon, '\t', static_cast<std::size_t>(cr - after_colon))) return false;
  return !length ||
         (value.find(',') == std::string_view::npos && (value.size() == 1 || value[0] != '0'));
}

// Parses field lines from `pos` up to and including the empty line that ends the head; `pos`
// ends just past it. `classify_name(name)` says which fields matter; `on_other(f, kind)` takes
// the ones the loop does not handle itself (the request-only kinds). `request`: the stricter
// request rules above, and end-to-end names with '_' marked `underscored`.
template <class Classify, class OnOther>
head_parse parse_fields(const char* base, std::size_t& pos, std::size_t avail,
                        std::vector<head_field>& fields, field_facts& ff, const char** error,
                        bool request, Classify&& classify_name, OnOther&& on_other) {
  for (;;) {
    if (pos >= avail) return head_parse::need_more;
    const char* p = base + pos;
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', avail - pos));
    if (!lf) {
      // An incomplete line: refuse now what can already be seen to be wrong.
      if (is_ows(*p)) return fail(error, "obsolete line folding");
      return head_parse::need_more;
    }
    if (lf == p || lf[-1] != '\r') return fail(error, "bare LF in the head");
    const char* cr = lf - 1;
    std::size_t next = static_cast<std::size_t>(lf - base) + 1;
    if (cr == p) {  // the empty line: end of head
      pos = next;
      return head_parse::done;
    }
    if (is_ows(*p)) return fail(error, "obsolete line folding");
    const char* q = p;
    while (q < cr && is_tchar(*q)) ++q;
    if (q == p || q == cr || *q != ':') return fail(error, "bad field name");
    std::string_view name(p, static_cast<std::size_t>(q - p));
    const char* after_colon = ++q;
    while (q < cr && is_ows(*q)) ++q;
    const char* v = q;
    for (; q < cr; ++q)
      if (!is_vchar(*q)) return fail(error, "bad character in a field value");
    const char* vend = cr;
    while (vend > v && is_ows(vend[-1])) --vend;
    std::string_view value(v, static_cast<std::size_t>(vend - v));

    head_field f;
    f.name = name;
    f.value = value;
    f.line_begin = static_cast<std::uint32_t>(pos);
    f.line_end = static_cast<std::uint32_t>(next);
    special kind = classify_name(name);
    switch (kind) {
      case special::none: break;
      case special::content_length: {
        std::uint64_t n = 0;
        if (!parse_content_length(value, n) ||
            (request && !strict_framing_value(value, after_colon, cr, true)))
          return fail(error, "bad Content-Length");
        if (ff.has_content_length && n != ff.length)
          return fail(error, "differing Content-Length");
        ff.has_content_length = true;
        ff.length = n;
        f.what = head_field::kind::content_length;
        break;
      }
      case special::transfer_encoding:
        if (request && !strict_framing_value(value, after_colon, cr, false))
          return fail(error, "bad Transfer-Encoding");
        ++ff.transfer_encodings;
        ff.chunked = iequals_lower(value, "chunked");
        f.what = head_field::kind::hop_by_hop;
        break;
      case special::connection:
        if (!scan_connection(value, ff)) return fail(error, "bad Connection value");
        f.what = head_field::kind::hop_by_hop;
        break;
      case special::upgrade:
        ff.upgrade = value;
        f.what = head_field::kind::hop_by_hop;
        break;
      case special::other_hop: f.what = head_field::kind::hop_by_hop; break;
      case special::date: ff.date = true; break;
      default:
        on_other(f, kind);
        break;
    }
    if (request && f.what == head_field::kind::end_to_end &&
        std::memchr(name.data(), '_', name.size()) != nullptr)
      f.what = head_field::kind::underscored;
    fields.push_back(f);
    pos = next;
  }
}

// Exactly one Transfer-Encoding field saying exactly "chunked": any other coding (or chunked
// applied twice, or not last) is something a proxy would have to guess about.
const char* check_transfer_encoding(const field_facts& ff) noexcept {
  if (ff.transfer_encodings == 0) return nullptr;
  if (ff.transfer_encodings != 1 || !ff.chunked) return "unsupported Transfer-Encoding";
  if (ff.has_content_length) return "Transfer-Encoding with Content-Length";
  return nullptr;
}

bool in_range(std::string_view v, const char* from, std::size_t size) noexcept {
  return v.data() >= from && v.data() <= from + size;
}

void move_view(std::string_view& v, const char* from, std::size_t size, const char* to) noexcept {
  if (!v.empty() && in_range(v, from, size)) v = {to + (v.data() - from), v.size()};
}

}  // namespace

void response_head::reset() noexcept {
  status = 0;
  version = 11;
  reason = {};
  status_line_end = 0;
  size = 0;
  framing = body_framing::eof;
  length = 0;
  has_date = false;
  keep_alive = false;
  has_content_length = false;
  connection_upgrade = false;
  connection_names_fields = false;
  upgrade = {};
  if (fields.capacity() > 64) {
    std::vector<head_field>().swap(fields);
  } else {
    fields.clear();
  }
}

head_parse parse_response_head(std::string_view buf, std::size_t limit, bool head_request,
                               response_head& h, const char** error) {
  h.reset();
  const char* const base = buf.data();
  // Nothing past the limit is looked at; a head that has not ended by then is refused.
  std::size_t avail = buf.size() < limit ? buf.size() : limit;
  auto need_more = [&]() {
    return buf.size() >= limit ? fail(error, "response head too large") : head_parse::need_more;
  };

  // Status line: HTTP/1.x SP 3DIGIT [SP reason-phrase] CRLF.
  const char* lf = find_byte(base, '\n', avail);
  if (!lf) {
    // Refuse early what cannot become a status line.
    static constexpr std::string_view proto = "HTTP/1.";
    auto n = avail < proto.size() ? avail : proto.size();
    if (n > 0 && std::memcmp(base, proto.data(), n) != 0) return fail(error, "bad status line");
    return need_more();
  }
  if (lf == base || lf[-1] != '\r') return fail(error, "bare LF in the status line");
  {
    std::string_view line(base, static_cast<std::size_t>(lf - 1 - base));
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
      return fail(error, "bad status line");
    h.version = line[7] == '0' ? 10 : 11;
    unsigned s = 0;
    for (int i = 9; i < 12; ++i) {
      char c = line[static_cast<std::size_t>(i)];
      if (c < '0' || c > '9') return fail(error, "bad status code");
      s = s * 10 + static_cast<unsigned>(c - '0');
    }
    if (s < 100) return fail(error, "bad status code");
    h.status = s;
    if (line.size() > 12) {
      if (line[12] != ' ') return fail(error, "bad status line");
      auto reason = line.substr(13);
      for (char c : reason)
        if (!is_vchar(c)) return fail(error, "bad reason phrase");
      h.reason = reason;
    }
  }
  std::size_t pos = static_cast<std::size_t>(lf - base) + 1;
  h.status_line_end = static_cast<std::uint32_t>(pos);

  field_facts ff;
  auto r = parse_fields(base, pos, avail, h.fields, ff, error, false, classify,
                        [](head_field&, special) {});
  if (r == head_parse::need_more) return need_more();
  if (r != head_parse::done) return r;
  h.size = pos;
  h.has_content_length = ff.has_content_length;
  h.length = ff.length;
  h.connection_upgrade = ff.connection_upgrade;
  h.connection_names_fields = ff.names_fields;
  h.upgrade = ff.upgrade;
  h.has_date = ff.date;

  if (const char* bad = check_transfer_encoding(ff)) return fail(error, bad);
  if (head_request || h.status < 200 || h.status == 204 || h.status == 304) {
    h.framing = body_framing::none;
  } else if (ff.transfer_encodings > 0) {
    h.framing = body_framing::chunked;
  } else if (h.has_content_length) {
    h.framing = h.length > 0 ? body_framing::length : body_framing::none;
  } else {
    h.framing = body_framing::eof;
  }
  h.keep_alive = !ff.close && (h.version >= 11 || ff.keep_alive_token) &&
                 h.framing != body_framing::eof;
  return head_parse::done;
}

// ---- requests --------------------------------------------------------------------------------

void request_head::reset() noexcept {
  method = {};
  target = {};
  target_parts = {};
  version = 11;
  size = 0;
  framing = body_framing::none;
  length = 0;
  has_content_length = false;
  keep_alive = false;
  upgrade = false;
  connection_names_fields = false;
  host = {};
  upgrade_value = {};
  expect = {};
  if (fields.capacity() > 64) {
    std::vector<head_field>().swap(fields);
  } else {
    fields.clear();
  }
}

std::string_view request_head::find(std::string_view name) const noexcept {
  for (const auto& f : fields) {
    if (f.name.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i) same = lower(f.name[i]) == lower(name[i]);
    if (same) return f.value;
  }
  return {};
}

void request_head::rebase(const char* from, const char* to) noexcept {
  auto n = size;
  move_view(method, from, n, to);
  move_view(target, from, n, to);
  move_view(target_parts.authority, from, n, to);
  move_view(target_parts.origin, from, n, to);
  move_view(target_parts.path, from, n, to);
  move_view(host, from, n, to);
  move_view(upgrade_value, from, n, to);
  move_view(expect, from, n, to);
  for (auto& f : fields) {
    move_view(f.name, from, n, to);
    move_view(f.value, from, n, to);
  }
}

namespace {

constexpr std::size_t max_method = 32;  // longer "methods" are refused (400)

// What origin-form and absolute-form targets may not carry, beyond control characters and
// spaces: bytes outside ASCII (RFC 3986 has none; nginx passes them, HAProxy and Envoy refuse
// them), a fragment ('#' is never sent, RFC 9112 §3.2), a backslash (some servers read it as
// '/'), and NUL, CR or LF percent-encoded (decoded by an upstream, they truncate a path or
// split a header).
const char* check_target(std::string_view t) noexcept {
  for (std::size_t i = 0; i < t.size(); ++i) {
    auto u = static_cast<unsigned char>(t[i]);
    if (u <= 0x20 || u == 0x7f) return "malformed request line";
    if (u >= 0x80) return "non-ASCII byte in the request target";
    if (u == '#') return "fragment in the request target";
    if (u == '\\') return "backslash in the request target";
    if (u == '%' && i + 2 < t.size() && t[i + 1] == '0') {
      char c = lower(t[i + 2]);
      if (c == '0' || c == 'a' || c == 'd')
        return "percent-encoded NUL, CR or LF in the request target";
    }
  }
  return nullptr;
}

// CONNECT host:port: the port is 1 to 5 digits.
bool valid_connect_port(std::string_view authority) noexcept {
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) return false;
  auto port = authority.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  for (char c : port)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

request_verdict parse_request_head(std::string_view buf, const config::listener_limits& limits,
                                   request_head& h) {
  h.reset();
  request_verdict out;
  auto reject = [&](unsigned status, const char* reason) {
    out.what = head_parse::malformed;
    out.status = status;
    out.reason = reason;
    return out;
  };
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line
  // (some clients send an extra CRLF after a POST body). Allow a few.
  std::size_t skip = 0;
  while (skip + 2 <= buf.size() && buf[skip] == '\r' && buf[skip + 1] == '\n' && skip < 8)
    skip += 2;
  if (skip + 1 == buf.size() && buf[skip] == '\r') return out;  // need more

  const char* const base = buf.data();
  std::size_t head_limit = skip + limits.max_header_bytes;
  std::size_t avail = buf.size() < head_limit ? buf.size() : head_limit;
  std::size_t line_scan = std::size_t{limits.max_request_line} + 2;  // with its CRLF

  // Request line: method SP request-target SP HTTP-version CRLF.
  const char* start = base + skip;
  std::size_t rest = avail - (skip < avail ? skip : avail);
  const char* lf = find_byte(start, '\n', rest);
  // A method that goes on and on is refused as such (400), not as a long line (414).
  if (find_byte(start, ' ', std::min(rest, max_method + 1)) == nullptr &&
      (lf ? static_cast<std::size_t>(lf - start) : rest) > max_method)
    return reject(400, "method too long");
  if (!lf) {
    // No line break yet: refused as soon as the line is visibly too long, or the head full.
    if (rest > line_scan || buf.size() >= head_limit) return reject(414, "request line too long");
    return out;
  }
  std::size_t line_len = static_cast<std::size_t>(lf - start) + 1;
  if (line_len > line_scan) return reject(414, "request line too long");
  if (lf == start || lf[-1] != '\r') return reject(400, "malformed request head");
  {
    std::string_view line(start, line_len - 2);
    auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0) return reject(400, "malformed request line");
    auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1)
      return reject(400, "malformed request line");
    h.method = line.substr(0, sp1);
    for (char c : h.method) {  // at most max_method bytes: checked above
      if (!is_tchar(c)) return reject(400, "malformed request line");
      // Methods are case-sensitive and every registered one is upper case: "get" is not GET,
      // and an upstream that folds case would see a different request than the proxy (nginx
      // refuses these too).
      if (c >= 'a' && c <= 'z') return reject(400, "method not in upper case");
    }
    if (h.method == "TRACE") return reject(405, "TRACE is not allowed");
    h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (const char* bad = check_target(h.target)) return reject(400, bad);
    auto version = line.substr(sp2 + 1);
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
        version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
      return reject(400, "malformed request line");
    if (version[5] != '1') return reject(400, "unsupported HTTP version");
    if (version[7] > '1') return reject(505, "unsupported HTTP version");
    h.version = version[7] == '0' ? 10 : 11;
  }

  std::size_t pos = skip + line_len;
  field_facts ff;
  std::size_t hosts = 0;
  const char* error = "";
  auto r = parse_fields(base, pos, avail, h.fields, ff, &error, true, classify_request,
                        [&](head_field& f, special kind) {
                          switch (kind) {
                            case special::host:
                              if (hosts++ == 0) h.host = f.value;
                              f.what = head_field::kind::host;
                              break;
                            case special::expect:
                              h.expect = f.value;
                              f.what = head_field::kind::expect;
                              break;
                            case special::forwarded: f.what = head_field::kind::forwarded; break;
                            case special::x_forwarded_for:
                              f.what = head_field::kind::x_forwarded_for;
                              break;
                            default: f.what = head_field::kind::x_forwarded_other; break;
                          }
                        });
  if (r == head_parse::need_more) {
    if (buf.size() >= head_limit) return reject(431, "request head too large");
    return out;
  }
  if (r == head_parse::malformed) return reject(400, error);
  h.size = pos;
  if (limits.underscores == config::listener_limits::underscore_action::reject)
    for (const auto& f : h.fields)
      if (f.what == head_field::kind::underscored)
        return reject(400, "header field name with an underscore");
  if (h.fields.size() > limits.max_headers) return reject(431, "too many header fields");
  if (const char* bad = check_transfer_encoding(ff)) return reject(400, bad);
  if (ff.transfer_encodings > 0 && h.version == 10)
    return reject(400, "Transfer-Encoding with Content-Length or in HTTP/1.0");
  if (hosts > 1) return reject(400, "several Host fields");
  if (hosts == 0 && h.version == 11) return reject(400, "HTTP/1.1 request without Host");
  if (hosts == 1 && !valid_host(h.host)) return reject(400, "invalid Host");
  h.target_parts = classify_target(h.target);
  bool connect = h.method == "CONNECT";
  switch (h.target_parts.form) {
    case target_form::origin:
    case target_form::absolute: break;
    case target_form::asterisk:
      if (h.method != "OPTIONS") return reject(400, "'*' target with a method other than OPTIONS");
      break;
    case target_form::authority:
      if (!connect) return reject(400, "authority-form target without CONNECT");
      // RFC 9110 §9.3.6: a CONNECT to an empty or invalid port is refused with 400.
      if (!valid_connect_port(h.target)) return reject(400, "CONNECT without a valid port");
      return reject(405, "CONNECT is not supported");
    case target_form::invalid: return reject(400, "invalid request target");
  }
  if (connect) return reject(400, "CONNECT needs an authority-form target (host:port)");
  // Expect: only 100-continue is known (RFC 9110 §10.1.1 lets anything else get 417).
  if (!h.expect.empty() && !iequals_lower(h.expect, "100-continue"))
    return reject(417, "unsupported expectation");

  h.has_content_length = ff.has_content_length;
  h.length = ff.length;
  h.connection_names_fields = ff.names_fields;
  h.upgrade_value = ff.upgrade;
  h.upgrade = ff.connection_upgrade && !ff.upgrade.empty();
  if (ff.transfer_encodings > 0) {
    h.framing = body_framing::chunked;
  } else if (ff.has_content_length && ff.length > 0) {
    if (limits.max_body > 0 && ff.length > limits.max_body)
      return reject(413, "body larger than the limit");
    h.framing = body_framing::length;
  } else {
    h.framing = body_framing::none;
  }
  h.keep_alive = !ff.close && (h.version >= 11 || ff.keep_alive_token);
  out.what = head_parse::done;
  return out;
}

// Declared in forwarding.hpp; the list is the one the head parsers classify with.
bool is_hop_by_hop(std::string_view name) noexcept {
  switch (classify(name)) {
    case special::transfer_encoding:
    case special::connection:
    case special::upgrade:
    case special::other_hop: return true;
    default: return false;
  }
}

bool named_by_connection(const std::vector<head_field>& fields, std::string_view name) noexcept {
  for (const auto& c : fields)
    if (c.what == head_field::kind::hop_by_hop && classify(c.name) == special::connection &&
        token_list_contains(c.value, name))
      return true;
  return false;
}

void append_status_line(std::string& out, std::string_view raw, const response_head& h) {
  if (h.version == 11 && !h.reason.empty() && raw.substr(0, 9) == "HTTP/1.1 ") {
    out.append(raw.data(), h.status_line_end);  // already what goes downstream
    return;
  }
  out += "HTTP/1.1 ";
  char digits[4];
  auto r = std::to_chars(digits, digits + sizeof digits, h.status);
  out.append(digits, static_cast<std::size_t>(r.ptr - digits));
  out += ' ';
  out += h.reason.empty() ? reason_phrase(h.status) : h.reason;
  out += "\r\n";
}

void append_end_to_end_fields(std::string& out, std::string_view raw, const response_head& h,
                              bool drop_content_length) {
  // Kept lines are contiguous in `raw` until a dropped one: copy each run at once.
  std::uint32_t run = 0, run_end = 0;
  for (const auto& f : h.fields) {
    bool keep = f.what == head_field::kind::end_to_end ||
                (f.what == head_field::kind::content_length && !drop_content_length);
    if (keep && h.connection_names_fields && named_by_connection(h, f)) keep = false;
    if (keep) {
      if (run_end != f.line_begin) {
        out.append(raw.data() + run, run_end - run);
        run = f.line_begin;
      }
      run_end = f.line_end;
    }
  }
  out.append(raw.data() + run, run_end - run);
}

std::string_view reason_phrase(unsigned status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

}  // namespace sluice::http
