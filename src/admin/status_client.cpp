#include "sluice/admin/status_client.hpp"

#include <exception>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "sluice/core/address.hpp"

namespace sluice::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {

constexpr std::size_t max_status_bytes = 64u * 1024 * 1024;

// "http://HOST:PORT/" or "HOST:PORT" → "HOST:PORT"; empty on anything else.
std::string authority_of(std::string_view url, std::string* error) {
  if (const auto p = url.find("://"); p != std::string_view::npos) {
    const auto scheme = url.substr(0, p);
    if (scheme != "http") {
      *error = "only http:// URLs are supported (the admin listener speaks plain HTTP), got '" +
               std::string(url) + "'";
      return {};
    }
    url.remove_prefix(p + 3);
  }
  if (const auto slash = url.find('/'); slash != std::string_view::npos) {
    if (url.substr(slash) != "/") {
      *error = "give the admin listener's address without a path (e.g. http://127.0.0.1:9901), got '" +
               std::string(url) + "'";
      return {};
    }
    url = url.substr(0, slash);
  }
  if (url.find('@') != std::string_view::npos || !core::split_host_port(url)) {
    *error = "expected http://HOST:PORT, got '" + std::string(url) + "'";
    return {};
  }
  return std::string(url);
}

const json::value* member(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->value();
}

// Small typed readers that name what is wrong.
struct reader {
  std::string* error;

  bool fail(const std::string& where, const char* what) {
    *error = "status document: " + where + ": " + what;
    return false;
  }
  bool string(const json::object& o, std::string_view key, const std::string& where, std::string& out,
              bool required = true) {
    const auto* v = member(o, key);
    if (!v || v->is_null()) return !required || fail(where + "." + std::string(key), "missing");
    if (!v->is_string()) return fail(where + "." + std::string(key), "expected a string");
    out = std::string(v->as_string());
    return true;
  }
  bool uint(const json::object& o, std::string_view key, const std::string& where,
            std::uint32_t& out) {
    const auto* v = member(o, key);
    if (!v) return fail(where + "." + std::string(key), "missing");
    if (v->is_uint64() && v->as_uint64() <= 0xffffffffu) out = static_cast<std::uint32_t>(v->as_uint64());
    else if (v->is_int64() && v->as_int64() >= 0 && v->as_int64() <= 0xffffffff)
      out = static_cast<std::uint32_t>(v->as_int64());
    else return fail(where + "." + std::string(key), "expected an unsigned integer");
    return true;
  }
  const json::array* array(const json::object& o, std::string_view key, const std::string& where) {
    const auto* v = member(o, key);
    if (!v || !v->is_array()) {
      fail(where + std::string(where.empty() ? "" : ".") + std::string(key), "expected a list");
      return nullptr;
    }
    return &v->as_array();
  }
  const json::object* object(const json::value& v, const std::string& where) {
    if (!v.is_object()) {
      fail(where, "expected an object");
      return nullptr;
    }
    return &v.as_object();
  }
  template <class E, std::size_t N>
  bool choice(const std::string& text, const std::pair<const char*, E> (&choices)[N],
              const std::string& where, E& out) {
    for (const auto& [name, value] : choices)
      if (text == name) {
        out = value;
        return true;
      }
    *error = "status document: " + where + ": unknown value '" + text + "'";
    return false;
  }
};

bool read_listener(reader& rd, const json::object& o, const std::string& where,
                   config::listener& l) {
  std::string protocol;
  if (!rd.string(o, "name", where, l.name) || !rd.string(o, "address", where, l.address) ||
      !rd.string(o, "protocol", where, protocol))
    return false;
  static constexpr std::pair<const char*, config::listener::protocol_kind> protocols[] = {
      {"http", config::listener::protocol_kind::http}, {"tcp", config::listener::protocol_kind::tcp}};
  if (!rd.choice(protocol, protocols, where + ".protocol", l.protocol)) return false;
  if (l.protocol == config::listener::protocol_kind::tcp)
    return rd.string(o, "cluster", where, l.cluster, /*required=*/false);
  const auto* routes = rd.array(o, "routes", where);
  if (!routes) return false;
  for (std::size_t i = 0; i < routes->size(); ++i) {
    const std::string rw = where + ".routes[" + std::to_string(i) + "]";
    const auto* ro = rd.object((*routes)[i], rw);
    if (!ro) return false;
    config::route r;
    if (!rd.string(*ro, "host", rw, r.match.host) ||
        !rd.string(*ro, "path_prefix", rw, r.match.path_prefix))
      return false;
    if (member(*ro, "direct")) {
      r.direct.emplace();
      if (!rd.uint(*ro, "direct", rw, r.direct->status)) return false;
    } else if (!rd.string(*ro, "cluster", rw, r.cluster)) {
      return false;
    }
    l.routes.push_back(std::move(r));
  }
  return true;
}

bool read_cluster(reader& rd, const json::object& o, const std::string& where,
                  config::cluster& c) {
  std::string policy, protocol, health;
  if (!rd.string(o, "name", where, c.name) || !rd.string(o, "policy", where, policy) ||
      !rd.string(o, "protocol", where, protocol) || !rd.string(o, "health_check", where, health))
    return false;
  static constexpr std::pair<const char*, config::policy_kind> policies[] = {
      {"round_robin", config::policy_kind::round_robin}, {"least_conn", config::policy_kind::least_conn},
      {"random", config::policy_kind::random},           {"p2c", config::policy_kind::p2c},
      {"ring_hash", config::policy_kind::ring_hash}};
  static constexpr std::pair<const char*, config::upstream_protocol> protocols[] = {
      {"http1", config::upstream_protocol::http1}, {"h2c", config::upstream_protocol::h2c},
      {"h2", config::upstream_protocol::h2}};
  static constexpr std::pair<const char*, config::health_check::kind> checks[] = {
      {"none", config::health_check::kind::none}, {"tcp", config::health_check::kind::tcp},
      {"http", config::health_check::kind::http}, {"grpc", config::health_check::kind::grpc}};
  if (!rd.choice(policy, policies, where + ".policy", c.policy) ||
      !rd.choice(protocol, protocols, where + ".protocol", c.protocol) ||
      !rd.choice(health, checks, where + ".health_check", c.health.type))
    return false;
  if (const auto* d = member(o, "discovery"); d && d->is_object()) {
    std::string source;
    if (!rd.string(d->as_object(), "source", where + ".discovery", source)) return false;
    if (source == "etcd") c.discovery = config::etcd_discovery{};
  }
  const auto* backends = rd.array(o, "backends", where);
  if (!backends) return false;
  for (std::size_t i = 0; i < backends->size(); ++i) {
    const std::string bw = where + ".backends[" + std::to_string(i) + "]";
    const auto* bo = rd.object((*backends)[i], bw);
    if (!bo) return false;
    config::endpoint e;
    if (!rd.string(*bo, "address", bw, e.address) || !rd.uint(*bo, "weight", bw, e.weight))
      return false;
    // One backend object per address (a weight change replaces it); keep the first if not.
    bool dup = false;
    for (const auto& x : c.endpoints) dup = dup || x.address == e.address;
    if (!dup) c.endpoints.push_back(std::move(e));
  }
  return true;
}

}  // namespace

std::optional<config::config> config_from_status(std::string_view json_text, std::string* error) {
  std::string local;
  if (!error) error = &local;
  boost::system::error_code ec;
  const json::value doc = json::parse(json_text, ec);
  if (ec) {
    *error = "status document: not JSON: " + ec.message();
    return std::nullopt;
  }
  reader rd{error};
  const auto* root = rd.object(doc, "(document)");
  if (!root) return std::nullopt;
  config::config cfg;
  if (const auto* conf = member(*root, "config"); conf && conf->is_object())
    if (!rd.string(conf->as_object(), "file", "config", cfg.file, false)) return std::nullopt;
  const auto* listeners = rd.array(*root, "listeners", "");
  if (!listeners) return std::nullopt;
  for (std::size_t i = 0; i < listeners->size(); ++i) {
    const std::string where = "listeners[" + std::to_string(i) + "]";
    const auto* o = rd.object((*listeners)[i], where);
    config::listener l;
    if (!o || !read_listener(rd, *o, where, l)) return std::nullopt;
    cfg.listeners.push_back(std::move(l));
  }
  const auto* clusters = rd.array(*root, "clusters", "");
  if (!clusters) return std::nullopt;
  for (std::size_t i = 0; i < clusters->size(); ++i) {
    const std::string where = "clusters[" + std::to_string(i) + "]";
    const auto* o = rd.object((*clusters)[i], where);
    config::cluster c;
    if (!o || !read_cluster(rd, *o, where, c)) return std::nullopt;
    cfg.clusters.push_back(std::move(c));
  }
  return cfg;
}

std::optional<std::string> fetch_status(std::string_view url, std::string_view token,
                                        std::chrono::milliseconds timeout, std::string* error) {
  std::string local;
  if (!error) error = &local;
  try {
    const std::string authority = authority_of(url, error);
    if (authority.empty()) return std::nullopt;
    const auto hp = core::split_host_port(authority);
    asio::io_context io(1);
    asio::ip::tcp::resolver resolver(io);
    boost::system::error_code ec;
    const auto results = resolver.resolve(hp->host, std::to_string(hp->port), ec);
    if (ec) {
      *error = authority + ": cannot resolve: " + ec.message();
      return std::nullopt;
    }
    beast::tcp_stream stream(io);
    beast::flat_buffer buffer;
    http::request<http::empty_body> req{http::verb::get, "/status", 11};
    req.set(http::field::host, authority);
    req.set(http::field::user_agent, "sluice/" SLUICE_VERSION);
    req.set(http::field::connection, "close");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + std::string(token));
    http::response_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(max_status_bytes);
    std::string failure;
    stream.expires_after(timeout);  // one deadline for the whole exchange
    stream.async_connect(results, [&](boost::system::error_code cec, const auto&) {
      if (cec) {
        failure = "cannot connect: " + cec.message();
        return;
      }
      http::async_write(stream, req, [&](boost::system::error_code wec, std::size_t) {
        if (wec) {
          failure = "cannot send the request: " + wec.message();
          return;
        }
        http::async_read(stream, buffer, parser, [&](boost::system::error_code rec, std::size_t) {
          if (rec) failure = "cannot read the answer: " + rec.message();
        });
      });
    });
    io.run();
    if (!failure.empty()) {
      *error = authority + ": " + failure;
      return std::nullopt;
    }
    auto res = parser.release();
    if (res.result() == http::status::unauthorized) {
      *error = authority + ": the admin API wants a token (" +
               std::string(token.empty() ? "none given" : "the one given was refused") +
               "): pass --admin-token TOKEN or set SLUICE_ADMIN_TOKEN";
      return std::nullopt;
    }
    if (res.result() != http::status::ok) {
      *error = authority + ": GET /status answered " + std::to_string(res.result_int());
      return std::nullopt;
    }
    return std::move(res.body());
  } catch (const std::exception& e) {
    *error = std::string(url) + ": " + e.what();
    return std::nullopt;
  }
}

}  // namespace sluice::admin
