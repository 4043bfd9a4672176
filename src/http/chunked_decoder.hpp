// Decoding of chunked message bodies (RFC 9112 §7.1), incrementally and strictly: every line
// ends in CRLF (a bare LF or CR is an error wherever it appears, the trailer section included),
// chunk sizes are hex without sign or whitespace, extensions follow the grammar, and a size line
// or the trailer section has a length limit. Trailer fields are checked, and dropped unless
// collected.
// No Beast or Asio here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {

class chunked_decoder {
 public:
  struct limits {
    std::size_t max_line = 4096;          // a chunk-size line, extensions included (then 400)
    std::size_t max_trailers = 16 * 1024; // the trailer section (all its lines)
    std::uint64_t max_body = 0;           // decoded body bytes; 0: no limit
  };

  enum class error : std::uint8_t {
    none,
    bad_size,           // no hex digit, a stray character, or a size past 2^64
    bad_extension,      // chunk-ext not following the grammar
    line_too_long,      // size line longer than max_line
    bad_line_end,       // bare LF or CR in a size line, a trailer line or after chunk data
    bad_trailer,        // a malformed trailer field line (or obs-fold)
    trailers_too_large, // trailer section longer than max_trailers
    body_too_large,     // more than max_body bytes of data
  };

  chunked_decoder() = default;
  explicit chunked_decoder(limits l) : limits_(l) {}
  /// Starts over for a new body (trailer fields are dropped again).
  void reset(limits l);
  /// Trailer fields (name, value without surrounding whitespace) are appended to `out` from
  /// now on, until the next reset.
  void collect_trailers(std::vector<std::pair<std::string, std::string>>* out) noexcept {
    trailers_ = out;
  }

  /// Decodes from `in`, copying chunk data to `out` (at most `out_size` bytes; `produced` says
  /// how many). Returns the bytes of `in` consumed; stops at the end of the body, at an error,
  /// or when `out` is full. Bytes after the body's end are not consumed.
  std::size_t decode(std::string_view in, char* out, std::size_t out_size, std::size_t& produced);

  bool done() const noexcept { return state_ == state::done; }
  bool failed() const noexcept { return error_ != error::none; }
  error why() const noexcept { return error_; }
  /// The status a client that sent this body gets: 413 when it was too large, else 400.
  unsigned status() const noexcept { return error_ == error::body_too_large ? 413 : 400; }
  /// A short description of the error, for the log ("" when none).
  static std::string_view describe(error e) noexcept;

 private:
  enum class state : std::uint8_t { size_line, data, data_cr, data_lf, trailer_line, done };

  std::size_t fail(error e) {
    error_ = e;
    return 0;
  }
  bool reject(error e) {
    error_ = e;
    return false;
  }
  // Takes one complete line (without its CRLF).
  bool size_line(std::string_view line);
  bool trailer_line(std::string_view line);

  limits limits_{};
  state state_ = state::size_line;
  error error_ = error::none;
  std::uint64_t left_ = 0;  // data bytes left in the current chunk
  std::uint64_t body_ = 0;  // data bytes so far (for max_body)
  std::size_t trailer_bytes_ = 0;
  std::string line_;  // a line split across inputs (bounded by the limits)
  std::vector<std::pair<std::string, std::string>>* trailers_ = nullptr;
};

}  // namespace sluice::http
