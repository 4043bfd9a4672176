#include "sluice/h2/translate.hpp"

#include <charconv>

#include "sluice/http/forwarding.hpp"

namespace sluice::h2 {

namespace {

using namespace std::string_view_literals;

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower(c);
  return out;
}

bool clean(std::string_view s) noexcept {
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0') return false;
  return true;
}

void field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": "sv;
  out += value;
  out += "\r\n"sv;
}

// Fields named by Connection are connection-specific too (RFC 9110 section 7.6.1).
bool named_by_connection(const header_list& fields, std::string_view name) {
  for (const auto& f : fields)
    if (iequals(f.name, "connection") && http::token_list_contains(f.value, name)) return true;
  return false;
}

}  // namespace

bool connection_specific(std::string_view name) noexcept {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "transfer-encoding") ||
         iequals(name, "upgrade") || iequals(name, "te");
}

http1_request to_http1_request(const header_list& req, bool end_stream, const forward_info& fwd) {
  http1_request r;
  std::string_view method, path, authority, host, content_length;
  bool has_content_length = false;
  for (const auto& f : req) {
    if (!clean(f.name) || !clean(f.value) || f.name.empty()) {
      r.error = "invalid character in a header field";
      return r;
    }
    if (f.name == ":method") method = f.value;
    else if (f.name == ":path") path = f.value;
    else if (f.name == ":authority") authority = f.value;
    else if (f.name == "host" && host.empty()) host = f.value;
    else if (f.name == "content-length") {
      if (has_content_length && f.value != content_length) {
        r.error = "conflicting content-length fields";
        return r;
      }
      has_content_length = true;
      content_length = f.value;
    }
  }
  if (method.empty()) {
    r.error = "missing :method";
    return r;
  }
  if (method == "CONNECT") {
    r.error = "CONNECT is not proxied to HTTP/1.1 upstreams";
    return r;
  }
  for (char c : method)
    if (c <= ' ' || c == 0x7f) {
      r.error = "invalid :method";
      return r;
    }
  if (path.empty() || (path.front() != '/' && path != "*")) {
    r.error = "missing or invalid :path";
    return r;
  }
  for (char c : path)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      r.error = "invalid :path";
      return r;
    }
  if (!authority.empty()) host = authority;
  if (!host.empty() && !http::valid_host(host)) {
    r.error = "invalid :authority";
    return r;
  }

  if (end_stream) {
    r.framing = body_framing::none;
  } else if (has_content_length) {
    std::uint64_t n = 0;
    auto* b = content_length.data();
    auto* e = b + content_length.size();
    auto [p, ec] = std::from_chars(b, e, n);
    if (content_length.empty() || ec != std::errc() || p != e) {
      r.error = "invalid content-length";
      return r;
    }
    r.framing = n == 0 ? body_framing::none : body_framing::length;
    r.length = n;
  } else {
    r.framing = body_framing::chunked;
  }

  auto& h = r.head;
  h.reserve(256 + req.size() * 48);
  h += method;
  h += ' ';
  h += path;
  h += " HTTP/1.1\r\n"sv;
  field(h, "Host", host);

  std::string cookies, xff, forwarded;
  for (const auto& f : req) {
    const auto& name = f.name;
    if (name.front() == ':') continue;
    if (connection_specific(name) || name == "host" || name == "content-length" ||
        name == "expect" || name == "http2-settings")
      continue;
    if (name == "cookie") {
      if (!cookies.empty()) cookies += "; "sv;
      cookies += f.value;
      continue;
    }
    if (name == "x-forwarded-for") {
      if (!xff.empty()) xff += ", "sv;
      xff += f.value;
      continue;
    }
    if (name == "x-forwarded-proto" || name == "x-forwarded-host") continue;
    if (name.find('_') != std::string::npos) {
      using action = config::listener_limits::underscore_action;
      if (fwd.underscores == action::reject) {
        r.error = "header field name with an underscore";
        return r;
      }
      if (fwd.underscores == action::drop) continue;
    }
    if (name == "forwarded" && fwd.forwarded) {
      if (!forwarded.empty()) forwarded += ", "sv;
      forwarded += f.value;
      continue;
    }
    field(h, name, f.value);
  }
  if (!cookies.empty()) field(h, "cookie", cookies);
  h += "X-Forwarded-For: "sv;
  if (!xff.empty()) {
    h += xff;
    h += ", "sv;
  }
  h += fwd.client_ip;
  h += "\r\nX-Forwarded-Proto: "sv;
  h += fwd.proto;
  h += "\r\n"sv;
  if (!host.empty()) field(h, "X-Forwarded-Host", host);
  if (fwd.forwarded) {
    h += "Forwarded: "sv;
    if (!forwarded.empty()) {
      h += forwarded;
      h += ", "sv;
    }
    http::append_forwarded_element(h, fwd.client_ip, host, fwd.proto);
    h += "\r\n"sv;
  }
  switch (r.framing) {
    case body_framing::none:
      if (has_content_length || method == "POST" || method == "PUT" || method == "PATCH")
        h += "Content-Length: 0\r\n"sv;
      break;
    case body_framing::length: {
      char buf[24];
      auto res = std::to_chars(buf, buf + sizeof buf, r.length);
      h += "Content-Length: "sv;
      h.append(buf, res.ptr);
      h += "\r\n"sv;
      break;
    }
    case body_framing::chunked: h += "Transfer-Encoding: chunked\r\n"sv; break;
  }
  h += "\r\n"sv;
  return r;
}

header_list to_h2_response(unsigned status, const header_list& fields) {
  header_list out;
  out.reserve(fields.size() + 1);
  out.push_back({":status", std::to_string(status)});
  bool has_connection = false;
  for (const auto& f : fields)
    if (iequals(f.name, "connection")) has_connection = true;
  for (const auto& f : fields) {
    if (f.name.empty() || f.name.front() == ':' || connection_specific(f.name)) continue;
    if (has_connection && named_by_connection(fields, f.name)) continue;
    out.push_back({lowered(f.name), f.value});
  }
  return out;
}

header_list to_h2_trailers(const header_list& fields) {
  header_list out;
  for (const auto& f : fields) {
    if (f.name.empty() || f.name.front() == ':' || connection_specific(f.name)) continue;
    if (iequals(f.name, "content-length") || iequals(f.name, "trailer") ||
        iequals(f.name, "host"))
      continue;
    out.push_back({lowered(f.name), f.value});
  }
  return out;
}

}  // namespace sluice::h2
