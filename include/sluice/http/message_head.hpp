// HTTP/1.x message heads parsed in place: one pass over the bytes, fields kept
// as views into the buffer they came in. No Asio, no Beast.
//
// The proxy reads a response head, decides how its body is framed and whether the upstream
// connection can be reused, and builds the head it sends downstream from the upstream's field
// lines, minus the hop-by-hop ones. A general-purpose parser that copies every field into a
// container does more than that needs; this one records where each field is and what the few
// fields that matter to a proxy say.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/http/forwarding.hpp"

namespace sluice::http {

/// How a response body is delimited (RFC 9112 §6.3).
enum class body_framing : std::uint8_t {
  none,     ///< no body: HEAD, 1xx, 204, 304, or Content-Length: 0
  length,   ///< Content-Length bytes
  chunked,  ///< Transfer-Encoding: chunked
  eof,      ///< until the upstream closes
};

/// One field line of a parsed head. Offsets are from the head's first byte.
struct head_field {
  enum class kind : std::uint8_t {
    end_to_end,      ///< forwarded (unless a Connection field names it)
    content_length,  ///< re-framed by the proxy
    hop_by_hop,      ///< Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
                     ///< Transfer-Encoding, Upgrade: never forwarded as they are
    // Requests only:
    host,               ///< Host
    expect,             ///< Expect (100-continue is the proxy's to answer)
    forwarded,          ///< Forwarded
    x_forwarded_for,    ///< X-Forwarded-For (the proxy appends to it)
    x_forwarded_other,  ///< X-Forwarded-Proto, X-Forwarded-Host (the proxy sets them)
    underscored,        ///< an end-to-end field whose name has '_' (headers_with_underscores)
  };
  std::string_view name;
  std::string_view value;      ///< without surrounding whitespace
  std::uint32_t line_begin = 0;  ///< offset of the field line's first byte
  std::uint32_t line_end = 0;    ///< offset just past its CRLF
  kind what = kind::end_to_end;
};

struct response_head {
  unsigned status = 0;
  unsigned version = 11;  ///< 10 or 11 (HTTP/1.0, HTTP/1.1; later 1.x count as 11)
  std::string_view reason;
  std::uint32_t status_line_end = 0;  ///< offset just past the status line's CRLF
  std::size_t size = 0;               ///< bytes of the whole head, final CRLF included
  body_framing framing = body_framing::eof;
  std::uint64_t length = 0;  ///< framing::length: the body's size
  /// The upstream connection can carry another exchange after this response (given that the
  /// body is read to its end): not `Connection: close`, HTTP/1.0 only with keep-alive, and a
  /// body that is not delimited by the close.
  bool keep_alive = false;
  bool has_content_length = false;
  bool connection_upgrade = false;  ///< a Connection field lists "upgrade"
  /// A Connection field lists names other than close, keep-alive and upgrade: those fields are
  /// hop-by-hop too (RFC 9110 §7.6.1); see `named_by_connection`.
  bool connection_names_fields = false;
  std::string_view upgrade;  ///< the Upgrade field's value (empty when none)
  bool has_date = false;     ///< a Date field came (else the proxy adds one, RFC 9110 §6.6.1)
  std::vector<head_field> fields;

  /// Forgets the previous head; keeps the fields' storage unless it grew large.
  void reset() noexcept;
};

enum class head_parse : std::uint8_t { need_more, done, malformed };

/// Largest upstream response head accepted (bytes).
inline constexpr std::size_t response_header_limit = 64 * 1024;

/// A downstream request head (RFC 9112 §3), with what a proxy needs to route and forward it.
struct request_head {
  std::string_view method;
  std::string_view target;
  split_target target_parts;  ///< `target`, classified
  unsigned version = 11;      ///< 10 or 11
  std::size_t size = 0;       ///< bytes of the head: leading empty lines, final CRLF included
  body_framing framing = body_framing::none;  ///< none, length or chunked
  std::uint64_t length = 0;                   ///< framing::length: the body's size
  bool has_content_length = false;
  bool keep_alive = false;  ///< the client may send another request on the connection
  bool upgrade = false;     ///< Connection: upgrade with an Upgrade field
  bool connection_names_fields = false;  ///< see response_head
  std::string_view host;                 ///< the Host field (empty when none)
  std::string_view upgrade_value;        ///< the Upgrade field
  std::string_view expect;               ///< the Expect field
  std::vector<head_field> fields;

  void reset() noexcept;
  bool is_head() const noexcept { return method == "HEAD"; }
  /// The value of the first field called `name` (case-insensitive), empty when none.
  std::string_view find(std::string_view name) const noexcept;
  /// Moves every view that points into [from, from + size) to the same offset from `to`: the
  /// head's bytes were copied there.
  void rebase(const char* from, const char* to) noexcept;
};

/// The verdict on a request head.
struct request_verdict {
  head_parse what = head_parse::need_more;
  unsigned status = 0;     ///< malformed: the status to answer (400, 405, 413, 414, 431, 505)
  const char* reason = "";  ///< malformed: short reason for the error log
};

/// Parses the request head at the start of `buffered` (call again with the same bytes plus new
/// ones while it returns need_more). Up to four empty lines before the request line are
/// skipped (RFC 9112 §2.2) and counted in `out.size`. The views in `out` point into
/// `buffered`. Besides the field syntax rules of parse_response_head it refuses: a request
/// line longer than `limits.max_request_line` (414, as soon as that is visible), a head over
/// `max_header_bytes` or with more than `max_headers` fields (431), a declared body over
/// `max_body` (413), a version other than HTTP/1.0 or 1.1 (400; 505 for HTTP/1.2–1.9),
/// Transfer-Encoding in HTTP/1.0, no Host in HTTP/1.1, several Host fields or an invalid
/// one, a target that is not origin-form, absolute-form or `*` with OPTIONS (400), CONNECT
/// (405; 400 without a valid host:port), TRACE (405), a method with lower-case letters or
/// longer than 32 bytes (400), a target with bytes outside ASCII, '#', '\\' or a
/// percent-encoded NUL, CR or LF (400), a Content-Length that is a list or has a leading zero,
/// a tab around a Content-Length or Transfer-Encoding value (400), an Expect other than
/// 100-continue (417), and a field name with '_' when `limits.underscores` says reject (400).
request_verdict parse_request_head(std::string_view buffered,
                                   const config::listener_limits& limits, request_head& out);

/// Appends the field lines of `fields` for which `keep(field)` holds, copied from `raw` (the
/// bytes they were parsed from), runs of kept lines in one piece.
template <class Keep>
void append_field_lines(std::string& out, std::string_view raw,
                        const std::vector<head_field>& fields, Keep&& keep) {
  std::uint32_t run = 0, run_end = 0;
  for (const auto& f : fields) {
    if (!keep(f)) continue;
    if (run_end != f.line_begin) {
      out.append(raw.data() + run, run_end - run);
      run = f.line_begin;
    }
    run_end = f.line_end;
  }
  out.append(raw.data() + run, run_end - run);
}

/// True when a Connection field among `fields` lists `name`.
bool named_by_connection(const std::vector<head_field>& fields, std::string_view name) noexcept;

/// Parses the response head at the start of `buffered` (the bytes received so far; call again
/// with the same bytes plus the new ones while it returns need_more). `limit`: largest head
/// accepted, in bytes. `head_request`: the request was HEAD (no body follows whatever the
/// fields say). On `malformed`, `*error` (when given) says what was wrong. The views in `out`
/// point into `buffered`.
///
/// Rejected, as a request-smuggling or response-splitting guard: a line ending in a bare LF,
/// obs-fold, a field name that is not a token (so whitespace before the colon), control
/// characters in a value, Content-Length that is not a number or differs between fields,
/// Transfer-Encoding other than exactly one "chunked", Transfer-Encoding with Content-Length,
/// a version other than HTTP/1.x, a status outside 100–999.
head_parse parse_response_head(std::string_view buffered, std::size_t limit, bool head_request,
                               response_head& out, const char** error = nullptr);

/// True when a Connection field of `h` lists `f`'s name (only possible when
/// `h.connection_names_fields`).
inline bool named_by_connection(const response_head& h, const head_field& f) noexcept {
  return h.connection_names_fields && named_by_connection(h.fields, f.name);
}

/// Appends the status line to send downstream: `HTTP/1.1 <status> <reason>` (the standard
/// reason when the upstream sent none). `raw`: the bytes `h` was parsed from.
void append_status_line(std::string& out, std::string_view raw, const response_head& h);

/// Appends the field lines of `h` that go downstream: all but the hop-by-hop ones (those named
/// by Connection included) and, when `drop_content_length`, Content-Length. Lines are copied as
/// the upstream wrote them, runs of kept lines in one piece. `raw`: the bytes `h` was parsed
/// from.
void append_end_to_end_fields(std::string& out, std::string_view raw, const response_head& h,
                              bool drop_content_length);

/// The standard reason phrase of a status ("Unknown" for unassigned ones).
std::string_view reason_phrase(unsigned status) noexcept;

}  // namespace sluice::http
