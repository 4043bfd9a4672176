#include "request_head.hpp"

#include <cstring>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

namespace sluice::http {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Beast joins obs-fold continuation lines into one value; RFC 9112 §5.2 lets a server reject
// them, which closes a request-smuggling door. A fold is a line break followed by SP or HTAB.
bool has_obs_fold(std::string_view raw) noexcept {
  for (std::size_t i = raw.find('\n'); i != std::string_view::npos && i + 1 < raw.size();
       i = raw.find('\n', i + 1)) {
    if (raw[i + 1] == ' ' || raw[i + 1] == '\t') return true;
  }
  return false;
}

// Bytes of the first line including its CRLF, or npos.
std::size_t first_line_length(std::string_view raw, std::size_t scan_limit) noexcept {
  auto n = std::min(raw.size(), scan_limit);
  const void* lf = std::memchr(raw.data(), '\n', n);
  if (!lf) return std::string_view::npos;
  return static_cast<std::size_t>(static_cast<const char*>(lf) - raw.data()) + 1;
}

template <class Header>
bool transfer_encoding_ok(const Header& h, bool& present) noexcept {
  present = false;
  std::size_t count = 0;
  std::string_view value;
  for (const auto& f : h) {
    if (f.name() == bhttp::field::transfer_encoding) {
      ++count;
      value = f.value();
    }
  }
  if (count == 0) return true;
  present = true;
  // Exactly one field saying exactly "chunked": any other coding (or chunked applied twice,
  // or chunked not last) is something we would have to guess about.
  return count == 1 && iequals(trim(value), "chunked");
}

}  // namespace

std::size_t feedable_head(std::string_view b, std::size_t limit) noexcept {
  static constexpr std::string_view eom = "\r\n\r\n";
  if (b.size() > limit || b.ends_with(eom) || b.find(eom) != std::string_view::npos)
    return b.size();
  auto lf = b.find('\n');
  if (lf == std::string_view::npos) return b.size();  // no line break: nothing to consume yet
  for (auto i = lf; i != std::string_view::npos; i = b.find('\n', i + 1))
    if (i == 0 || b[i - 1] != '\r') return b.size();  // a bare LF: let the parser reject it
  return lf;
}

void prepare(request_parser& p, const config::listener_limits& limits) {
  p.header_limit(limits.max_header_bytes);
  if (limits.max_body > 0)
    p.body_limit(limits.max_body);
  else
    p.body_limit(boost::none);
  p.eager(false);
}

unsigned check_head(const request_header& req, std::string_view raw,
                    const config::listener_limits& limits, split_target& target,
                    const char*& reason) {
  auto line = first_line_length(raw, raw.size());
  if (line != std::string_view::npos && line - 2 > limits.max_request_line) {
    reason = "request line too long";
    return 414;
  }
  std::size_t fields = 0;
  std::size_t hosts = 0;
  std::string_view host;
  bool content_length = false;
  for (const auto& f : req) {
    ++fields;
    switch (f.name()) {
      case bhttp::field::host:
        ++hosts;
        host = f.value();
        break;
      case bhttp::field::content_length: content_length = true; break;
      default: break;
    }
  }
  if (fields > limits.max_headers) {
    reason = "too many header fields";
    return 431;
  }
  if (has_obs_fold(raw)) {
    reason = "obsolete line folding";
    return 400;
  }
  if (req.version() != 11 && req.version() != 10) {
    reason = "unsupported HTTP version";
    return 505;
  }
  bool te = false;
  if (!transfer_encoding_ok(req, te)) {
    reason = "unsupported Transfer-Encoding";
    return 400;
  }
  if (te && (content_length || req.version() == 10)) {
    reason = "Transfer-Encoding with Content-Length or in HTTP/1.0";
    return 400;
  }
  if (hosts > 1) {
    reason = "several Host fields";
    return 400;
  }
  if (hosts == 0 && req.version() == 11) {
    reason = "HTTP/1.1 request without Host";
    return 400;
  }
  if (hosts == 1 && !valid_host(host)) {
    reason = "invalid Host";
    return 400;
  }
  target = classify_target(req.target());
  switch (target.form) {
    case target_form::origin:
    case target_form::absolute: break;
    case target_form::asterisk:
      if (req.method() != bhttp::verb::options) {
        reason = "'*' target with a method other than OPTIONS";
        return 400;
      }
      break;
    case target_form::authority:
      reason = "CONNECT is not supported";
      return req.method() == bhttp::verb::connect ? 405 : 400;
    case target_form::invalid: reason = "invalid request target"; return 400;
  }
  if (req.method() == bhttp::verb::connect) {
    reason = "CONNECT is not supported";
    return 405;
  }
  return 0;
}

head_result feed_head(request_parser& p, std::string_view buffered,
                      const config::listener_limits& limits) {
  head_result r;
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line
  // (some clients send an extra CRLF after a POST body). Allow a few.
  std::size_t skip = 0;
  while (skip + 2 <= buffered.size() && buffered[skip] == '\r' && buffered[skip + 1] == '\n' &&
         skip < 8)
    skip += 2;
  if (skip + 1 == buffered.size() && buffered[skip] == '\r') return r;  // need more
  auto data = buffered.substr(skip);

  boost::system::error_code ec;
  auto used = p.put(boost::asio::const_buffer(data.data(), feedable_head(data, limits.max_header_bytes)), ec);
  if (ec == bhttp::error::need_more) {
    // Refuse an over-long request line as soon as it is visible, not at the head limit.
    std::size_t scan = std::size_t{limits.max_request_line} + 2;
    if (data.size() > scan && first_line_length(data, scan) == std::string_view::npos) {
      r.what = head_result::state::reject;
      r.status = 414;
      r.reason = "request line too long";
    }
    return r;
  }
  r.what = head_result::state::reject;
  if (ec) {
    if (ec == bhttp::error::header_limit) {
      auto line = first_line_length(data, data.size());
      bool long_line = line == std::string_view::npos || line - 2 > limits.max_request_line;
      r.status = long_line ? 414 : 431;
      r.reason = long_line ? "request line too long" : "request head too large";
    } else if (ec == bhttp::error::body_limit) {
      r.status = 413;
      r.reason = "body larger than the limit";
    } else {
      r.status = 400;
      r.reason = "malformed request head";
    }
    return r;
  }
  if (!p.is_header_done()) {  // cannot happen with a non-eager parser; be safe
    r.status = 400;
    r.reason = "malformed request head";
    return r;
  }
  auto raw = data.substr(0, used);
  r.status = check_head(p.get().base(), raw, limits, r.target, r.reason);
  if (r.status == 0) {
    if (limits.max_body > 0 && p.content_length() && *p.content_length() > limits.max_body) {
      r.status = 413;
      r.reason = "body larger than the limit";
      return r;
    }
    r.what = head_result::state::done;
    r.head_size = skip + used;
  }
  return r;
}

bool check_response_head(const response_header& res, std::string_view raw) noexcept {
  if (has_obs_fold(raw)) return false;
  bool te = false;
  if (!transfer_encoding_ok(res, te)) return false;
  if (te) {
    for (const auto& f : res)
      if (f.name() == bhttp::field::content_length) return false;
  }
  return true;
}

}  // namespace sluice::http
