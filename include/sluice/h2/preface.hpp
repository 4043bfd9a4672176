// Recognising an HTTP/2 prior-knowledge connection (h2c) by its client connection preface.
#pragma once

#include <string_view>

namespace sluice::h2 {

/// The client connection preface (RFC 9113 section 3.4), 24 bytes.
inline constexpr std::string_view client_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// True when `first_bytes` starts with the whole preface.
bool looks_like_preface(std::string_view first_bytes) noexcept;

/// True while `first_bytes` (fewer than 24 bytes) could still become the preface: the caller
/// should read more before deciding. False once it is the full preface or cannot be one.
bool could_be_preface(std::string_view first_bytes) noexcept;

}  // namespace sluice::h2
