// HTTP forwarding rules on plain strings (RFC 9110 §7.6): hop-by-hop headers, X-Forwarded-*,
// Forwarded, idempotency, request-target forms. No I/O, no Asio.
#pragma once

#include <string>
#include <string_view>

namespace sluice::http {

/// True for the headers that are hop-by-hop by definition (RFC 9110 §7.6.1 plus the
/// de-facto Keep-Alive and Proxy-Connection): Connection, Keep-Alive, Proxy-Connection, TE,
/// Trailer, Transfer-Encoding, Upgrade. Case-insensitive. Headers named by a Connection header
/// are hop-by-hop too: check them with `token_list_contains`.
bool is_hop_by_hop(std::string_view name) noexcept;

/// True when the comma-separated list `list` (e.g. a Connection value) holds `token`,
/// compared case-insensitively with surrounding whitespace ignored.
bool token_list_contains(std::string_view list, std::string_view token) noexcept;

/// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 §9.2.2; method names are case-sensitive).
bool is_idempotent(std::string_view method) noexcept;

/// Appends one RFC 7239 forwarded-element: `for=<ip>;host="<host>";proto=<proto>` (proto is
/// "http" or "https", the scheme the client used). IPv6 addresses are written `for="[::1]"`; an
/// empty host is left out.
void append_forwarded_element(std::string& out, std::string_view client_ip,
                              std::string_view host, std::string_view proto = "http");

/// A Host value we accept (RFC 9110 §7.2: uri-host [":" port]): non-empty, no whitespace,
/// control characters, '/', '?', '#', '@' or ','; a bracketed IPv6 literal or a reg-name/IPv4,
/// then an optional all-digit port.
bool valid_host(std::string_view host) noexcept;

/// The shape of a request target (RFC 9112 §3.2).
enum class target_form { origin, absolute, authority, asterisk, invalid };

struct split_target {
  target_form form = target_form::invalid;
  std::string_view authority;  ///< absolute-form only: "host[:port]"
  std::string_view origin;     ///< the origin-form part: "/path?query" ("/" if the URI had none)
  std::string_view path;       ///< origin without the query
};

/// Classifies `target`. For absolute-form ("http://host/p?q", scheme http or https,
/// case-insensitive) returns the authority and the origin-form to forward. Userinfo
/// ("http://u@host/") is rejected as invalid.
split_target classify_target(std::string_view target) noexcept;

}  // namespace sluice::http
