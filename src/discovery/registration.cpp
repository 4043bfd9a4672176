#include "sluice/discovery/registration.hpp"

#include <boost/json.hpp>

#include "sluice/core/address.hpp"

namespace sluice::discovery {

namespace json = boost::json;

namespace {

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

// Quotes a fragment of a bad value for a log line: short, one line, printable.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 60) out += "...";
  return "'" + out + "'";
}

std::optional<registration> fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return std::nullopt;
}

// A host name or address literal is printable ASCII: anything else cannot resolve, and would
// reach log lines as it came (a registrant's bytes, not necessarily text).
bool printable_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      return false;
  return true;
}

std::optional<registration> with_address(registration r, std::string_view text, std::string* error) {
  if (!printable_ascii(text) || !core::split_host_port(text))
    return fail(error, "address " + shown(text) + " is not host:port with a port 1-65535");
  r.address = std::string(text);
  return r;
}

}  // namespace

std::optional<registration> parse_registration(std::string_view value, std::string* error) {
  const std::string_view v = trim(value);
  if (v.empty()) return fail(error, "empty value (write host:port or {\"address\": \"host:port\"})");
  if (v.front() != '{' && v.front() != '"') return with_address({}, v, error);

  boost::system::error_code ec;
  json::value doc = json::parse(v, ec);
  if (ec) return fail(error, "invalid JSON (" + ec.message() + ") in " + shown(v));
  if (doc.is_string()) return with_address({}, trim(doc.as_string()), error);
  if (!doc.is_object()) return fail(error, "expected a JSON object, got " + shown(v));
  const auto& o = doc.as_object();

  registration r;
  auto* a = o.if_contains("address");
  if (!a) return fail(error, "JSON value without \"address\"");
  if (!a->is_string()) return fail(error, "\"address\" is not a string");
  if (auto* w = o.if_contains("weight")) {
    std::int64_t n = 0;
    if (w->is_int64()) n = w->as_int64();
    else if (w->is_uint64()) n = w->as_uint64() > max_weight ? max_weight + 1 : static_cast<std::int64_t>(w->as_uint64());
    // The range first: converting a double outside int64's range is undefined (a weight past
    // 2^64 comes as a double).
    else if (w->is_double() && w->as_double() >= -1e9 && w->as_double() <= 1e9 &&
             w->as_double() == static_cast<double>(static_cast<std::int64_t>(w->as_double())))
      n = static_cast<std::int64_t>(w->as_double());  // 2.0 is an integer in JSON terms
    else
      return fail(error, "\"weight\" is not an integer: " + json::serialize(*w));
    if (n < 1 || n > static_cast<std::int64_t>(max_weight))
      return fail(error, "\"weight\" must be between 1 and " + std::to_string(max_weight) +
                             ", got " + std::to_string(n));
    r.weight = static_cast<std::uint32_t>(n);
  }
  if (auto* p = o.if_contains("protocol")) {
    if (!p->is_string()) return fail(error, "\"protocol\" is not a string");
    r.protocol = std::string(p->as_string());
  }
  if (auto* m = o.if_contains("meta"); m && !m->is_object() && !m->is_null())
    return fail(error, "\"meta\" is not an object");
  return with_address(std::move(r), trim(a->as_string()), error);
}

std::string format_registration(const registration& r) {
  json::object o;
  o["address"] = r.address;
  o["weight"] = r.weight;
  if (!r.protocol.empty()) o["protocol"] = r.protocol;
  return json::serialize(o);
}

}  // namespace sluice::discovery
