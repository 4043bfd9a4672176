// HTTP's character classes (RFC 9110 §5.1, §5.5, §5.6.3), one table lookup per byte: shared by
// the head parser and the chunked-body decoder. Internal header, no Asio or Beast.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace sluice::http::syntax {

enum : std::uint8_t { tchar = 1, vchar = 2 };

inline constexpr std::array<std::uint8_t, 256> classes = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0x21; c <= 0x7e; ++c) t[c] = vchar;  // visible ASCII
  for (int c = 0x80; c <= 0xff; ++c) t[c] = vchar;  // obs-text
  t[' '] = vchar;
  t['\t'] = vchar;  // field-value and reason-phrase allow SP and HTAB inside
  for (int c = '0'; c <= '9'; ++c) t[c] |= tchar;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= tchar;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= tchar;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] |= tchar;
  return t;
}();

/// A token character (field names, methods, chunk-extension names and values).
inline bool is_tchar(char c) noexcept { return classes[static_cast<unsigned char>(c)] & tchar; }
/// A character allowed inside a field value: visible ASCII, obs-text, SP and HTAB.
inline bool is_vchar(char c) noexcept { return classes[static_cast<unsigned char>(c)] & vchar; }
/// Optional whitespace (OWS, BWS): SP or HTAB.
inline bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

/// `s` without leading and trailing OWS.
inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace sluice::http::syntax
