#include "chunked_decoder.hpp"

#include <algorithm>
#include <cstring>

#include "syntax.hpp"

namespace sluice::http {

namespace {

using syntax::is_ows;
using syntax::is_tchar;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void skip_bws(std::string_view s, std::size_t& i) noexcept {
  while (i < s.size() && is_ows(s[i])) ++i;
}

bool take_token(std::string_view s, std::size_t& i) noexcept {
  std::size_t start = i;
  while (i < s.size() && is_tchar(s[i])) ++i;
  return i > start;
}

// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; `i` is at the opening quote.
bool take_quoted(std::string_view s, std::size_t& i) noexcept {
  ++i;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      ++i;
      return true;
    }
    if (c == '\\') {
      if (++i == s.size()) return false;
      c = static_cast<unsigned char>(s[i]);
      if (c != '\t' && (c < 0x20 || c == 0x7f)) return false;
    } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
      return false;
    }
    ++i;
  }
  return false;
}

}  // namespace

void chunked_decoder::reset(limits l) {
  limits_ = l;
  state_ = state::size_line;
  error_ = error::none;
  left_ = 0;
  body_ = 0;
  trailer_bytes_ = 0;
  line_.clear();
  trailers_ = nullptr;
}

std::string_view chunked_decoder::describe(error e) noexcept {
  switch (e) {
    case error::none: return "";
    case error::bad_size: return "bad chunk size";
    case error::bad_extension: return "bad chunk extension";
    case error::line_too_long: return "chunk size line too long";
    case error::bad_line_end: return "chunk framing line not ended by CRLF";
    case error::bad_trailer: return "bad trailer field";
    case error::trailers_too_large: return "trailer section too large";
    case error::body_too_large: return "body too large";
  }
  return "";
}

bool chunked_decoder::size_line(std::string_view line) {
  std::size_t i = 0;
  std::uint64_t size = 0;
  while (i < line.size()) {
    int v = hex_value(line[i]);
    if (v < 0) break;
    if (size >> 60) return reject(error::bad_size);
    size = size << 4 | static_cast<unsigned>(v);
    ++i;
  }
  if (i == 0) return reject(error::bad_size);
  // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ); whitespace must lead to ";".
  while (i < line.size()) {
    std::size_t before = i;
    skip_bws(line, i);
    if (i == line.size() || line[i] != ';')
      return reject(i == before ? error::bad_size : error::bad_extension);
    ++i;
    skip_bws(line, i);
    if (!take_token(line, i)) return reject(error::bad_extension);
    std::size_t j = i;
    skip_bws(line, j);
    if (j < line.size() && line[j] == '=') {
      i = j + 1;
      skip_bws(line, i);
      if (i < line.size() && line[i] == '"') {
        if (!take_quoted(line, i)) return reject(error::bad_extension);
      } else if (!take_token(line, i)) {
        return reject(error::bad_extension);
      }
    }
  }
  if (limits_.max_body > 0 && size > limits_.max_body - std::min(body_, limits_.max_body))
    return reject(error::body_too_large);
  left_ = size;
  state_ = size == 0 ? state::trailer_line : state::data;
  return true;
}

bool chunked_decoder::trailer_line(std::string_view line) {
  if (line.empty()) {
    state_ = state::done;
    return true;
  }
  // field-line = field-name ":" OWS field-value OWS; no obs-fold, no NUL or CR in the value.
  std::size_t i = 0;
  if (!take_token(line, i) || i == line.size() || line[i] != ':')
    return reject(error::bad_trailer);
  const std::size_t colon = i;
  for (++i; i < line.size(); ++i) {
    auto c = static_cast<unsigned char>(line[i]);
    if (c != '\t' && (c < 0x20 || c == 0x7f)) return reject(error::bad_trailer);
  }
  if (trailers_)
    trailers_->emplace_back(line.substr(0, colon), syntax::trim(line.substr(colon + 1)));
  return true;
}

std::size_t chunked_decoder::decode(std::string_view in, char* out, std::size_t out_size,
                                    std::size_t& produced) {
  produced = 0;
  std::size_t used = 0;
  while (used < in.size() && !failed() && state_ != state::done) {
    switch (state_) {
      case state::size_line:
      case state::trailer_line: {
        const bool trailer = state_ == state::trailer_line;
        std::string_view rest = in.substr(used);
        auto lf = rest.find('\n');
        std::size_t take = lf == std::string_view::npos ? rest.size() : lf + 1;
        // Bounds: a size line by max_line, the trailer section by max_trailers.
        std::size_t line_len = line_.size() + take;
        if (trailer) {
          if (trailer_bytes_ + line_len > limits_.max_trailers)
            return used + fail(error::trailers_too_large);
        } else if (line_len > limits_.max_line + 2) {
          return used + fail(error::line_too_long);
        }
        if (lf == std::string_view::npos) {
          // A CR may only end a line: a CR followed by anything is an error now.
          auto cr = rest.find('\r');
          if (cr != std::string_view::npos && cr + 1 < rest.size())
            return used + fail(error::bad_line_end);
          if (!line_.empty() && line_.back() == '\r' && !rest.empty())
            return used + fail(error::bad_line_end);
          line_.append(rest);
          used = in.size();
          break;
        }
        std::string_view line;
        if (line_.empty()) {
          line = rest.substr(0, lf);
        } else {
          line_.append(rest.substr(0, lf));
          line = line_;
        }
        used += take;
        // CRLF only: a bare LF, or a CR anywhere else in the line, is an error.
        if (line.empty() || line.back() != '\r') return used + fail(error::bad_line_end);
        line.remove_suffix(1);
        if (line.find('\r') != std::string_view::npos) return used + fail(error::bad_line_end);
        bool ok = trailer ? trailer_line(line) : size_line(line);
        if (trailer) trailer_bytes_ += line.size() + 2;
        line_.clear();
        if (!ok) return used;
        break;
      }
      case state::data: {
        std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(left_, std::min(in.size() - used, out_size - produced)));
        if (n == 0) return used;  // out is full
        std::memcpy(out + produced, in.data() + used, n);
        produced += n;
        used += n;
        left_ -= n;
        body_ += n;
        if (left_ == 0) state_ = state::data_cr;
        break;
      }
      case state::data_cr:
        if (in[used] != '\r') return used + fail(error::bad_line_end);
        ++used;
        state_ = state::data_lf;
        break;
      case state::data_lf:
        if (in[used] != '\n') return used + fail(error::bad_line_end);
        ++used;
        state_ = state::size_line;
        break;
      case state::done:
        break;
    }
  }
  return used;
}

}  // namespace sluice::http
