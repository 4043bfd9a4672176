#include "sluice/discovery/etcd_protocol.hpp"

#include <charconv>

#include <boost/json.hpp>
// Boost.JSON is compiled once for the whole program, here (header-only library otherwise).
#include <boost/json/src.hpp>

namespace sluice::discovery::etcd {

namespace json = boost::json;

namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// The gateway writes int64 fields as decimal strings (proto3 JSON); accept numbers too.
std::optional<std::int64_t> to_int64(const json::value* v) {
  if (!v) return std::int64_t{0};  // proto3 JSON leaves out zero values
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) {
    if (v->as_uint64() > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(v->as_uint64());
  }
  if (v->is_string()) {
    const auto& s = v->as_string();
    std::int64_t out = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return out;
  }
  return std::nullopt;
}

std::optional<json::value> parse_json(std::string_view body, std::string* error) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    if (error) *error = "invalid JSON from etcd: " + ec.message();
    return std::nullopt;
  }
  return v;
}

bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

// Reports an error body as the error; true if `v` is a usable (non-error) object.
bool check_object(const json::value& v, std::string* error) {
  if (!v.is_object()) return fail(error, "unexpected answer from etcd (not a JSON object)");
  if (auto e = parse_error(json::serialize(v))) {
    return fail(error, "etcd error " + std::to_string(e->code) + ": " + e->message);
  }
  return true;
}

std::optional<std::string> bytes_field(const json::object& o, std::string_view name,
                                       std::string* error) {
  auto* v = o.if_contains(name);
  if (!v) return std::string{};
  if (!v->is_string()) {
    fail(error, "etcd field '" + std::string(name) + "' is not a string");
    return std::nullopt;
  }
  auto d = base64_decode(v->as_string());
  if (!d) fail(error, "etcd field '" + std::string(name) + "' is not base64");
  return d;
}

std::optional<key_value> read_kv(const json::value& v, std::string* error) {
  if (!v.is_object()) {
    fail(error, "etcd key-value is not an object");
    return std::nullopt;
  }
  const auto& o = v.as_object();
  key_value kv;
  auto key = bytes_field(o, "key", error);
  auto value = bytes_field(o, "value", error);
  auto mod = to_int64(o.if_contains("mod_revision"));
  auto lease = to_int64(o.if_contains("lease"));
  if (!key || !value) return std::nullopt;
  if (!mod || !lease) {
    fail(error, "etcd key-value has a bad revision or lease");
    return std::nullopt;
  }
  kv.key = std::move(*key);
  kv.value = std::move(*value);
  kv.mod_revision = *mod;
  kv.lease = *lease;
  return kv;
}

std::optional<std::int64_t> header_revision(const json::object& o, std::string* error) {
  auto* h = o.if_contains("header");
  if (!h || !h->is_object()) {
    fail(error, "etcd answer has no header");
    return std::nullopt;
  }
  auto rev = to_int64(h->as_object().if_contains("revision"));
  if (!rev) fail(error, "etcd header has a bad revision");
  return rev;
}

std::string body_of(const json::object& o) { return json::serialize(o); }

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t(std::uint8_t(in[i])) << 16) |
                            (std::uint32_t(std::uint8_t(in[i + 1])) << 8) |
                            std::uint32_t(std::uint8_t(in[i + 2]));
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  if (const std::size_t rest = in.size() - i; rest) {
    std::uint32_t n = std::uint32_t(std::uint8_t(in[i])) << 16;
    if (rest == 2) n |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int s[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = in[i + j];
      if (c == '=' && last && j >= 2) {
        s[j] = 0;
        ++pad;
        continue;
      }
      if (pad) return std::nullopt;  // data after '='
      s[j] = sextet(c);
      if (s[j] < 0) return std::nullopt;
    }
    const std::uint32_t n = (std::uint32_t(s[0]) << 18) | (std::uint32_t(s[1]) << 12) |
                            (std::uint32_t(s[2]) << 6) | std::uint32_t(s[3]);
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

bool gateway_error::is_auth() const noexcept {
  if (code == 16) return true;
  // etcd reports some auth failures with other codes (e.g. "user name is empty" is code 3 when
  // a request arrives without a token once auth is on).
  for (std::string_view marker : {"auth token", "user name is empty", "Unauthenticated",
                                  "token", "authentication"})
    if (message.find(marker) != std::string::npos) return true;
  return false;
}

std::optional<gateway_error> parse_error(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  auto* e = o.if_contains("error");
  if (!e) return std::nullopt;
  gateway_error out;
  if (e->is_string()) {
    out.message = std::string(e->as_string());
    if (auto* c = o.if_contains("code"); c && c->is_int64()) out.code = static_cast<int>(c->as_int64());
  } else if (e->is_object()) {
    const auto& eo = e->as_object();
    if (auto* m = eo.if_contains("message"); m && m->is_string()) out.message = std::string(m->as_string());
    if (auto* c = eo.if_contains("grpc_code"); c && c->is_int64()) out.code = static_cast<int>(c->as_int64());
    else if (auto* c2 = eo.if_contains("code"); c2 && c2->is_int64()) out.code = static_cast<int>(c2->as_int64());
  } else {
    out.message = json::serialize(*e);
  }
  return out;
}

std::string range_request(std::string_view prefix) {
  json::object o;
  o["key"] = base64_encode(prefix);
  o["range_end"] = base64_encode(prefix_range_end(prefix));
  return body_of(o);
}

std::string watch_request(std::string_view prefix, std::int64_t start_revision) {
  json::object c;
  c["key"] = base64_encode(prefix);
  c["range_end"] = base64_encode(prefix_range_end(prefix));
  if (start_revision > 0) c["start_revision"] = std::to_string(start_revision);
  json::object o;
  o["create_request"] = std::move(c);
  return body_of(o);
}

std::string authenticate_request(std::string_view name, std::string_view password) {
  json::object o;
  o["name"] = name;
  o["password"] = password;
  return body_of(o);
}

std::string lease_grant_request(std::int64_t ttl_seconds) {
  json::object o;
  o["TTL"] = std::to_string(ttl_seconds);
  return body_of(o);
}

std::string lease_id_request(std::int64_t lease_id) {
  json::object o;
  o["ID"] = std::to_string(lease_id);
  return body_of(o);
}

std::string put_request(std::string_view key, std::string_view value, std::int64_t lease_id) {
  json::object o;
  o["key"] = base64_encode(key);
  o["value"] = base64_encode(value);
  if (lease_id) o["lease"] = std::to_string(lease_id);
  return body_of(o);
}

std::string delete_request(std::string_view key) {
  json::object o;
  o["key"] = base64_encode(key);
  return body_of(o);
}

std::optional<range_result> parse_range_response(std::string_view body, std::string* error) {
  auto v = parse_json(body, error);
  if (!v || !check_object(*v, error)) return std::nullopt;
  const auto& o = v->as_object();
  range_result out;
  auto rev = header_revision(o, error);
  if (!rev) return std::nullopt;
  out.revision = *rev;
  if (auto* kvs = o.if_contains("kvs")) {
    if (!kvs->is_array()) {
      fail(error, "etcd range: 'kvs' is not a list");
      return std::nullopt;
    }
    for (const auto& item : kvs->as_array()) {
      auto kv = read_kv(item, error);
      if (!kv) return std::nullopt;
      out.kvs.push_back(std::move(*kv));
    }
  }
  if (auto* m = o.if_contains("more"); m && m->is_bool()) out.more = m->as_bool();
  return out;
}

std::optional<std::string> parse_authenticate_response(std::string_view body, std::string* error) {
  auto v = parse_json(body, error);
  if (!v || !check_object(*v, error)) return std::nullopt;
  auto* t = v->as_object().if_contains("token");
  if (!t || !t->is_string() || t->as_string().empty()) {
    fail(error, "etcd authenticate: no token in the answer");
    return std::nullopt;
  }
  return std::string(t->as_string());
}

std::optional<std::int64_t> parse_lease_grant_response(std::string_view body, std::string* error) {
  auto v = parse_json(body, error);
  if (!v || !check_object(*v, error)) return std::nullopt;
  const auto& o = v->as_object();
  if (auto* e = o.if_contains("error"); e && e->is_string() && !e->as_string().empty()) {
    fail(error, "etcd lease grant: " + std::string(e->as_string()));
    return std::nullopt;
  }
  auto id = to_int64(o.if_contains("ID"));
  if (!id || *id <= 0) {
    fail(error, "etcd lease grant: no lease ID in the answer");
    return std::nullopt;
  }
  return id;
}

std::optional<std::int64_t> parse_keepalive_response(std::string_view body, std::string* error) {
  // A streaming call: the single answer is wrapped in {"result": ...}.
  auto v = parse_json(body, error);
  if (!v || !check_object(*v, error)) return std::nullopt;
  const json::object* o = &v->as_object();
  if (auto* r = o->if_contains("result")) {
    if (!r->is_object()) {
      fail(error, "etcd keepalive: 'result' is not an object");
      return std::nullopt;
    }
    o = &r->as_object();
  }
  auto ttl = to_int64(o->if_contains("TTL"));
  if (!ttl || *ttl < 0) {
    fail(error, "etcd keepalive: bad TTL in the answer");
    return std::nullopt;
  }
  return ttl;
}

std::optional<std::int64_t> parse_header_revision(std::string_view body, std::string* error) {
  auto v = parse_json(body, error);
  if (!v || !check_object(*v, error)) return std::nullopt;
  return header_revision(v->as_object(), error);
}

namespace {

std::optional<watch_message> decode_watch(const json::value& v, std::string* error) {
  if (!v.is_object()) {
    fail(error, "etcd watch: message is not a JSON object");
    return std::nullopt;
  }
  watch_message out;
  const auto& top = v.as_object();
  if (auto* e = top.if_contains("error")) {
    auto ge = parse_error(json::serialize(v));
    out.error = ge && !ge->message.empty() ? ge->message : json::serialize(*e);
    out.error_code = ge ? ge->code : 0;
    return out;
  }
  auto* r = top.if_contains("result");
  if (!r || !r->is_object()) {
    fail(error, "etcd watch: message has neither 'result' nor 'error'");
    return std::nullopt;
  }
  const auto& o = r->as_object();
  if (auto* h = o.if_contains("header"); h && h->is_object()) {
    auto rev = to_int64(h->as_object().if_contains("revision"));
    if (!rev) {
      fail(error, "etcd watch: bad header revision");
      return std::nullopt;
    }
    out.revision = *rev;
  }
  auto flag = [&](std::string_view name) {
    auto* f = o.if_contains(name);
    return f && f->is_bool() && f->as_bool();
  };
  out.created = flag("created");
  out.canceled = flag("canceled");
  auto compact = to_int64(o.if_contains("compact_revision"));
  if (!compact) {
    fail(error, "etcd watch: bad compact_revision");
    return std::nullopt;
  }
  out.compact_revision = *compact;
  if (auto* cr = o.if_contains("cancel_reason"); cr && cr->is_string())
    out.cancel_reason = std::string(cr->as_string());
  if (auto* evs = o.if_contains("events")) {
    if (!evs->is_array()) {
      fail(error, "etcd watch: 'events' is not a list");
      return std::nullopt;
    }
    for (const auto& ev : evs->as_array()) {
      if (!ev.is_object()) {
        fail(error, "etcd watch: an event is not an object");
        return std::nullopt;
      }
      const auto& eo = ev.as_object();
      watch_event we;
      if (auto* t = eo.if_contains("type")) {
        // proto3 JSON leaves out the default PUT; accept the enum's name or number.
        if (t->is_string() && t->as_string() == "DELETE") we.type = watch_event::kind::del;
        else if (t->is_string() && t->as_string() == "PUT") we.type = watch_event::kind::put;
        else if (t->is_int64() && t->as_int64() == 1) we.type = watch_event::kind::del;
        else if (t->is_int64() && t->as_int64() == 0) we.type = watch_event::kind::put;
        else {
          fail(error, "etcd watch: unknown event type " + json::serialize(*t));
          return std::nullopt;
        }
      }
      auto* kv = eo.if_contains("kv");
      if (!kv) {
        fail(error, "etcd watch: an event has no 'kv'");
        return std::nullopt;
      }
      auto decoded = read_kv(*kv, error);
      if (!decoded) return std::nullopt;
      we.kv = std::move(*decoded);
      out.events.push_back(std::move(we));
    }
  }
  return out;
}

}  // namespace

std::optional<watch_message> parse_watch_message(std::string_view body, std::string* error) {
  auto v = parse_json(body, error);
  if (!v) return std::nullopt;
  return decode_watch(*v, error);
}

struct watch_decoder::impl {
  explicit impl(std::size_t max) : max_message(max) {}
  json::stream_parser parser;
  std::size_t max_message;
  std::size_t pending = 0;  // bytes fed into the value being parsed
  bool broken = false;
};

watch_decoder::watch_decoder(std::size_t max_message)
    : impl_(std::make_unique<impl>(max_message)) {}
watch_decoder::~watch_decoder() = default;

bool watch_decoder::feed(std::string_view bytes, std::vector<watch_message>& out,
                         std::string* error) {
  auto& p = *impl_;
  if (p.broken) return fail(error, "etcd watch: stream already failed");
  while (!bytes.empty()) {
    // Whitespace between messages (the gateway ends each with a newline) is not a value.
    if (p.pending == 0) {
      std::size_t skip = 0;
      while (skip < bytes.size() && (bytes[skip] == '\n' || bytes[skip] == '\r' ||
                                     bytes[skip] == ' ' || bytes[skip] == '\t'))
        ++skip;
      bytes.remove_prefix(skip);
      if (bytes.empty()) break;
    }
    boost::system::error_code ec;
    const std::size_t used = p.parser.write_some(bytes.data(), bytes.size(), ec);
    if (ec) {
      p.broken = true;
      return fail(error, "etcd watch: invalid JSON in the stream: " + ec.message());
    }
    p.pending += used;
    bytes.remove_prefix(used);
    if (p.parser.done()) {
      json::value v = p.parser.release();
      p.parser.reset();
      p.pending = 0;
      auto m = decode_watch(v, error);
      if (!m) {
        p.broken = true;
        return false;
      }
      out.push_back(std::move(*m));
    } else if (p.pending > p.max_message) {
      p.broken = true;
      return fail(error, "etcd watch: a message exceeds " + std::to_string(p.max_message) + " bytes");
    }
  }
  return true;
}

}  // namespace sluice::discovery::etcd
