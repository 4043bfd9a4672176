// What one instance writes under a discovery prefix: the value format, parsed and formatted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::discovery {

/// One key's value. Accepted forms (surrounding whitespace ignored):
///   127.0.0.1:8001                      a bare host:port ("[::1]:8001" for IPv6)
///   "127.0.0.1:8001"                    the same as a JSON string
///   {"address": "127.0.0.1:8001", "weight": 2, "protocol": "h2c", "meta": {...}}
/// In the object form `address` is required; `weight` is an integer 1-1000 (default 1);
/// `protocol` (a string) and `meta` (an object) are kept for information and not used for
/// routing yet; other keys are ignored so registrants may add their own.
struct registration {
  std::string address;  ///< "host:port", port 1-65535
  std::uint32_t weight = 1;
  std::string protocol;
};

inline constexpr std::uint32_t max_weight = 1000;

/// nullopt with a one-line reason in *error for an unusable value (empty, bad JSON, missing or
/// bad address, port 0 or > 65535, weight not an integer in 1-1000, wrong field types).
std::optional<registration> parse_registration(std::string_view value, std::string* error);

/// The JSON object form, as `sluice register` writes it: {"address":"...","weight":N}.
std::string format_registration(const registration& r);

}  // namespace sluice::discovery
