#include "sluice/http/forwarding.hpp"

namespace sluice::http {

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

}  // namespace

bool token_list_contains(std::string_view list, std::string_view token) noexcept {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && is_ows(item.front())) item.remove_prefix(1);
    while (!item.empty() && is_ows(item.back())) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool is_idempotent(std::string_view m) noexcept {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" ||
         m == "TRACE";
}

void append_forwarded_element(std::string& out, std::string_view client_ip,
                              std::string_view host, std::string_view proto) {
  out += "for=";
  if (client_ip.find(':') != std::string_view::npos) {
    out += "\"[";
    out += client_ip;
    out += "]\"";
  } else {
    out += client_ip;
  }
  if (!host.empty()) {
    // valid_host() let no '"' or '\\' through, so quoting needs no escapes.
    out += ";host=\"";
    out += host;
    out += '"';
  }
  out += ";proto=";
  out += proto;
}

bool valid_host(std::string_view host) noexcept {
  if (host.empty()) return false;
  std::string_view name = host;
  std::string_view port;
  if (host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : host.substr(1, close - 1)) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                c == ':' || c == '.';
      if (!ok) return false;
    }
    auto rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
    name = {};
  } else {
    auto colon = host.find(':');
    if (colon != std::string_view::npos) {
      name = host.substr(0, colon);
      port = host.substr(colon + 1);
      if (name.empty()) return false;
    }
    for (char c : name) {
      // reg-name: unreserved / pct-encoded / sub-delims (',' excluded: it would make a list).
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_' || c == '~' || c == '%' || c == '!' ||
                c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' ||
                c == '+' || c == ';' || c == '=';
      if (!ok) return false;
    }
  }
  if (port.size() > 5) return false;
  for (char c : port)
    if (c < '0' || c > '9') return false;
  return true;
}

split_target classify_target(std::string_view target) noexcept {
  split_target out;
  if (target.empty()) return out;
  auto path_of = [](std::string_view origin) {
    return origin.substr(0, origin.find('?'));
  };
  if (target.front() == '/') {
    out.form = target_form::origin;
    out.origin = target;
    out.path = path_of(target);
    return out;
  }
  if (target == "*") {
    out.form = target_form::asterisk;
    out.origin = target;
    out.path = target;
    return out;
  }
  std::string_view rest;
  if (target.size() > 7 && iequals(target.substr(0, 7), "http://"))
    rest = target.substr(7);
  else if (target.size() > 8 && iequals(target.substr(0, 8), "https://"))
    rest = target.substr(8);
  if (!rest.empty()) {
    auto end = rest.find_first_of("/?#");
    auto authority = rest.substr(0, end);
    if (!valid_host(authority)) return out;
    out.form = target_form::absolute;
    out.authority = authority;
    if (end == std::string_view::npos || rest[end] == '#') {
      out.origin = "/";
    } else if (rest[end] == '?') {
      // "http://h?q" → "/?q" cannot be a view into the target; forward "/" and drop nothing
      // silently: treat as invalid rather than guess.
      out.form = target_form::invalid;
      return out;
    } else {
      out.origin = rest.substr(end);
    }
    out.path = path_of(out.origin);
    return out;
  }
  if (valid_host(target) && target.find(':') != std::string_view::npos) {
    out.form = target_form::authority;
    out.authority = target;
    return out;
  }
  return out;
}

}  // namespace sluice::http
