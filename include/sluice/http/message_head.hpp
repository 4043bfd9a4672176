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
  std::vector<head_field> fields;

  /// Forgets the previous head; keeps the fields' storage unless it grew large.
  void reset() noexcept;
};

enum class head_parse : std::uint8_t { need_more, done, malformed };

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
bool named_by_connection(const response_head& h, const head_field& f) noexcept;

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
