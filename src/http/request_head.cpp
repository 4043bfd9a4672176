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

bool start_chunked_body(request_parser& p, std::string_view head) {
  // Beast's parser does not take the empty lines a client may send before a request.
  while (head.starts_with("\r\n")) head.remove_prefix(2);
  boost::system::error_code ec;
  auto n = p.put(boost::asio::const_buffer(head.data(), head.size()), ec);
  return !ec && n == head.size() && p.is_header_done() && p.chunked();
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
