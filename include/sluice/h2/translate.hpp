// HTTP/2 <-> HTTP/1.1 message translation on plain header lists (RFC 9113 section 8.2.2/8.3,
// RFC 9110 section 7.6): request heads toward HTTP/1.1 upstreams, response fields back. No I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/config/config.hpp"
#include "sluice/h2/session.hpp"

namespace sluice::h2 {

/// How the request body is framed toward the HTTP/1.1 upstream.
enum class body_framing {
  none,     ///< END_STREAM came with the headers: no body
  length,   ///< the client gave content-length: Content-Length, relayed byte for byte
  chunked,  ///< length unknown: Transfer-Encoding: chunked (request trailers go in the last chunk)
};

/// What the proxy adds about the downstream hop (X-Forwarded-*, Forwarded).
struct forward_info {
  std::string_view client_ip;
  std::string_view proto = "http";  ///< X-Forwarded-Proto
  bool forwarded = false;           ///< also write an RFC 7239 Forwarded element
  /// Fields whose name has '_': dropped, passed on, or the request refused (the listener's
  /// headers_with_underscores).
  config::listener_limits::underscore_action underscores =
      config::listener_limits::underscore_action::drop;
};

/// A request head translated for an HTTP/1.1 upstream.
struct http1_request {
  std::string head;  ///< "METHOD /path HTTP/1.1\r\n...\r\n\r\n"
  body_framing framing = body_framing::none;
  std::uint64_t length = 0;  ///< framing::length: the declared body size
  std::string_view error;    ///< non-empty: the request cannot be translated (answer 400)
};

/// Builds the HTTP/1.1 request head for HTTP/2 request headers `req` (`end_stream`: the headers
/// ended the stream). :method and :path give the request line (CONNECT and a missing :path are
/// refused), :authority the Host field (else a `host` field; else an empty Host). Pseudo fields
/// and connection-specific fields (connection, keep-alive, proxy-connection, transfer-encoding,
/// upgrade, te, http2-settings) are dropped, as are expect and content-length (re-framed:
/// Content-Length when the client declared one, else chunked; no body at END_STREAM, with
/// "Content-Length: 0" for POST, PUT and PATCH). Cookie fields are joined with "; " (RFC 9113
/// section 8.2.3). X-Forwarded-For gets the client appended; X-Forwarded-Proto and
/// X-Forwarded-Host are replaced; Forwarded is appended to when `fwd.forwarded`, else passed on.
/// Fields whose name has '_' follow `fwd.underscores`. A name or value holding CR, LF or NUL
/// makes the request invalid.
http1_request to_http1_request(const header_list& req, bool end_stream, const forward_info& fwd);

/// True for the fields that never cross into HTTP/2 (RFC 9113 section 8.2.2): connection,
/// keep-alive, proxy-connection, transfer-encoding, upgrade, te. Case-insensitive.
bool connection_specific(std::string_view name) noexcept;

/// HTTP/2 response headers for an HTTP/1.1 response with status `status` and fields `fields`
/// (names as received): ":status" first, then every field with its name lower-cased, minus the
/// connection-specific ones and those the Connection field names. Repeated fields (Set-Cookie)
/// stay separate fields.
header_list to_h2_response(unsigned status, const header_list& fields);

/// HTTP/2 trailers for chunked-body trailer fields: lower-cased, minus connection-specific and
/// framing fields (content-length, trailer, host) and anything that looks like a pseudo field.
header_list to_h2_trailers(const header_list& fields);

}  // namespace sluice::h2
