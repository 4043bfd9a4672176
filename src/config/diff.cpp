#include "sluice/config/diff.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <string_view>
#include <utility>

namespace sluice::config {

namespace {

// ---- how values are shown -------------------------------------------------------------------

std::string show(duration d) { return format_duration(d); }
std::string show(std::uint32_t v) { return std::to_string(v); }
std::string show(std::uint64_t v) { return std::to_string(v); }
std::string show(bool v) { return v ? "true" : "false"; }
std::string show(double v) {
  std::string s = std::to_string(v);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}
std::string show(const std::string& s) {
  if (s.empty()) return "(none)";
  std::string out;
  bool plain = true;
  for (unsigned char c : s)
    if (c < 0x21 || c == '"' || c == '\\' || c >= 0x7f) plain = false;
  if (plain) return s;
  out += '"';
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c == '"' || c == '\\') (out += '\\') += static_cast<char>(c);
    else if (c < 0x20 || c == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else out += static_cast<char>(c);
  }
  out += '"';
  return out;
}

std::string show(policy_kind p) {
  switch (p) {
    case policy_kind::round_robin: return "round_robin";
    case policy_kind::least_conn: return "least_conn";
    case policy_kind::random: return "random";
    case policy_kind::p2c: return "p2c";
    case policy_kind::ring_hash: return "ring_hash";
  }
  return "?";
}
std::string show(upstream_protocol p) {
  switch (p) {
    case upstream_protocol::http1: return "http1";
    case upstream_protocol::h2c: return "h2c";
    case upstream_protocol::h2: return "h2";
  }
  return "?";
}
std::string show(listener::protocol_kind p) {
  return p == listener::protocol_kind::tcp ? "tcp" : "http";
}
std::string show(health_check::kind k) {
  switch (k) {
    case health_check::kind::none: return "none";
    case health_check::kind::tcp: return "tcp";
    case health_check::kind::http: return "http";
    case health_check::kind::grpc: return "grpc";
  }
  return "?";
}
std::string show(hash_on::kind k) {
  switch (k) {
    case hash_on::kind::client_ip: return "client_ip";
    case hash_on::kind::header: return "header";
    case hash_on::kind::cookie: return "cookie";
  }
  return "?";
}
std::string show(panic_mode p) { return p == panic_mode::spread ? "spread" : "fail"; }
std::string show(listener_limits::underscore_action a) {
  switch (a) {
    case listener_limits::underscore_action::drop: return "drop";
    case listener_limits::underscore_action::allow: return "allow";
    case listener_limits::underscore_action::reject: return "reject";
  }
  return "?";
}
std::string show(tcp_options::limit_action a) {
  return a == tcp_options::limit_action::queue ? "queue" : "refuse";
}
std::string show(tcp_options::relay_mode m) {
  switch (m) {
    case tcp_options::relay_mode::splice: return "splice";
    case tcp_options::relay_mode::buffer: return "buffer";
    case tcp_options::relay_mode::automatic: return "auto";
  }
  return "?";
}
std::string show(proxy_protocol::version v) {
  switch (v) {
    case proxy_protocol::version::none: return "none";
    case proxy_protocol::version::v1: return "v1";
    case proxy_protocol::version::v2: return "v2";
  }
  return "?";
}
std::string show(const hash_on& h) {
  return h.what == hash_on::kind::client_ip ? show(h.what) : show(h.what) + " " + h.name;
}
std::string show(const std::vector<status_range>& v) {
  std::string out;
  for (const auto& r : v) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.lo);
    if (r.hi != r.lo) out += "-" + std::to_string(r.hi);
  }
  return "[" + out + "]";
}
std::string show(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return "[" + out + "]";
}
std::string show(const std::vector<core::cidr>& v) {
  std::vector<std::string> texts;
  for (const auto& c : v) texts.push_back(c.to_string());
  return show(texts);
}
std::string show_outlier_count(std::uint8_t mask) {
  static constexpr std::pair<std::uint8_t, const char*> names[] = {
      {1 << 1, "connect_failure"}, {1 << 2, "reset"}, {1 << 3, "timeout"}, {1 << 4, "http_5xx"}};
  std::vector<std::string> out;
  for (auto [bit, name] : names)
    if (mask & bit) out.emplace_back(name);
  return show(out);
}

bool same_range(const status_range& a, const status_range& b) { return a.lo == b.lo && a.hi == b.hi; }
bool same(const std::vector<status_range>& a, const std::vector<status_range>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), same_range);
}
bool same(const hash_on& a, const hash_on& b) { return a.what == b.what && a.name == b.name; }
bool same(const std::vector<core::cidr>& a, const std::vector<core::cidr>& b) {
  return show(a) == show(b);
}
template <class T>
bool same(const T& a, const T& b) {
  return a == b;
}

// Collects the changes of one subject.
class recorder {
 public:
  recorder(std::vector<change>& out, std::string subject) : out_(out), subject_(std::move(subject)) {}

  template <class T>
  void field(std::string_view key, const T& a, const T& b) {
    if (!same(a, b)) changed(std::string(key) + ": " + show(a) + " -> " + show(b));
  }
  // A secret: say that it changed, never what it is.
  void secret(std::string_view key, const std::string& a, const std::string& b) {
    if (a == b) return;
    if (a.empty()) changed(std::string(key) + ": set");
    else if (b.empty()) changed(std::string(key) + ": removed");
    else changed(std::string(key) + ": changed");
  }
  void changed(std::string detail) { push(change::kind::changed, std::move(detail)); }
  void added(std::string detail) { push(change::kind::added, std::move(detail)); }
  void removed(std::string detail) { push(change::kind::removed, std::move(detail)); }

 private:
  void push(change::kind k, std::string detail) {
    out_.push_back(change{k, subject_, std::move(detail)});
  }
  std::vector<change>& out_;
  std::string subject_;
};

// ---- listeners ------------------------------------------------------------------------------

std::string route_match_text(const route_match& m) {
  return (m.host.empty() ? std::string() : m.host) + m.path_prefix;
}

std::string route_target(const route& r) {
  if (!r.direct) return "cluster " + r.cluster;
  std::string t = "direct " + std::to_string(r.direct->status);
  if (!r.direct->body.empty()) t += " " + show(r.direct->body);
  return t;
}

// Routes keyed by match; a match written twice gets "#2", "#3" (the later ones never match,
// but they are still compared).
std::vector<std::pair<std::string, const route*>> keyed_routes(const std::vector<route>& rs) {
  std::map<std::string, int> seen;
  std::vector<std::pair<std::string, const route*>> out;
  for (const auto& r : rs) {
    std::string key = route_match_text(r.match);
    if (int n = ++seen[key]; n > 1) key += " #" + std::to_string(n);
    out.emplace_back(std::move(key), &r);
  }
  return out;
}

void diff_routes(recorder& rec, const std::vector<route>& a, const std::vector<route>& b) {
  const auto ka = keyed_routes(a), kb = keyed_routes(b);
  auto find = [](const auto& list, const std::string& key) -> const route* {
    for (const auto& [k, r] : list)
      if (k == key) return r;
    return nullptr;
  };
  std::vector<std::string> common_a, common_b;
  for (const auto& [key, rb] : kb) {
    const route* ra = find(ka, key);
    if (!ra) {
      rec.added("route " + key + " added (-> " + route_target(*rb) + ")");
      continue;
    }
    common_b.push_back(key);
    if (ra->name != rb->name)
      rec.changed("route " + key + ": name: " + show(ra->name) + " -> " + show(rb->name));
    if (route_target(*ra) != route_target(*rb)) {
      rec.changed("route " + key + ": " + route_target(*ra) + " -> " + route_target(*rb));
    } else if (ra->direct && rb->direct && ra->direct->content_type != rb->direct->content_type) {
      rec.changed("route " + key + ": direct.content_type: " + show(ra->direct->content_type) +
                  " -> " + show(rb->direct->content_type));
    }
  }
  for (const auto& [key, ra] : ka) {
    if (!find(kb, key))
      rec.removed("route " + key + " removed (was -> " + route_target(*ra) + ")");
    else
      common_a.push_back(key);
  }
  if (common_a != common_b) rec.changed("routes reordered: " + show(common_a) + " -> " + show(common_b));
}

void diff_sni_routes(recorder& rec, const std::vector<sni_route>& a, const std::vector<sni_route>& b) {
  auto find = [](const std::vector<sni_route>& list, const std::string& name) -> const sni_route* {
    for (const auto& r : list)
      if (r.server_name == name) return &r;
    return nullptr;
  };
  for (const auto& rb : b) {
    const sni_route* ra = find(a, rb.server_name);
    if (!ra)
      rec.added("sni route " + rb.server_name + " added (-> cluster " + rb.cluster + ")");
    else if (ra->cluster != rb.cluster)
      rec.changed("sni route " + rb.server_name + ": cluster " + ra->cluster + " -> " + rb.cluster);
  }
  for (const auto& ra : a)
    if (!find(b, ra.server_name))
      rec.removed("sni route " + ra.server_name + " removed (was -> cluster " + ra.cluster + ")");
}

std::string listener_summary(const listener& l) {
  std::string s = show(l.protocol) + " on " + l.address;
  if (l.protocol == listener::protocol_kind::tcp) {
    if (!l.cluster.empty()) s += " -> cluster " + l.cluster;
    if (!l.tcp.sni_routes.empty()) s += ", " + std::to_string(l.tcp.sni_routes.size()) + " sni route(s)";
  } else {
    s += ", " + std::to_string(l.routes.size()) + " route" + (l.routes.size() == 1 ? "" : "s");
  }
  return s;
}

// The tls block as one line (certificate paths, names and options; file contents are not
// compared: a reload reads them again anyway).
std::string tls_text(const std::optional<tls_options>& t) {
  if (!t) return "off";
  std::string s;
  for (const auto& c : t->certificates) {
    s += (s.empty() ? "" : ", ") + c.cert + "+" + c.key;
    if (!c.server_names.empty()) {
      s += " [";
      for (std::size_t i = 0; i < c.server_names.size(); ++i)
        s += (i ? " " : "") + c.server_names[i];
      s += "]";
    }
  }
  s += "; alpn";
  for (const auto& a : t->alpn) s += " " + a;
  s += t->min_version == tls_options::version::tls1_3 ? "; min 1.3" : "; min 1.2";
  if (!t->ciphers.empty()) s += "; ciphers " + t->ciphers;
  s += "; handshake_timeout " + format_duration(t->handshake_timeout);
  return s;
}

void diff_listener(std::vector<change>& out, const listener& a, const listener& b) {
  recorder r(out, "listener " + b.name);
  r.field("address", a.address, b.address);
  r.field("protocol", a.protocol, b.protocol);
  r.field("cluster", a.cluster, b.cluster);
  diff_routes(r, a.routes, b.routes);
  r.field("forwarded", a.forwarded, b.forwarded);
  if (const auto x = tls_text(a.tls), y = tls_text(b.tls); x != y) r.changed("tls: " + x + " -> " + y);
  r.field("http2.max_concurrent_streams", a.http2.max_concurrent_streams,
          b.http2.max_concurrent_streams);
  r.field("http2.max_header_list_size", a.http2.max_header_list_size, b.http2.max_header_list_size);
  r.field("http2.stream_window", a.http2.stream_window, b.http2.stream_window);
  r.field("http2.reset_burst", a.http2.reset_burst, b.http2.reset_burst);
  r.field("http2.reset_rate", a.http2.reset_rate, b.http2.reset_rate);
  r.field("http2.max_connection_age", a.http2.max_connection_age, b.http2.max_connection_age);
  r.field("timeouts.header", a.timeouts.header, b.timeouts.header);
  r.field("timeouts.idle", a.timeouts.idle, b.timeouts.idle);
  r.field("timeouts.body", a.timeouts.body, b.timeouts.body);
  r.field("timeouts.send", a.timeouts.send, b.timeouts.send);
  r.field("limits.max_request_line", a.limits.max_request_line, b.limits.max_request_line);
  r.field("limits.max_header_bytes", a.limits.max_header_bytes, b.limits.max_header_bytes);
  r.field("limits.max_headers", a.limits.max_headers, b.limits.max_headers);
  r.field("limits.max_body", a.limits.max_body, b.limits.max_body);
  r.field("limits.max_keepalive_requests", a.limits.max_keepalive_requests,
          b.limits.max_keepalive_requests);
  r.field("headers_with_underscores", a.limits.underscores, b.limits.underscores);
  const auto &ta = a.tcp, &tb = b.tcp;
  r.field("tcp.idle_timeout", ta.idle_timeout, tb.idle_timeout);
  r.field("tcp.max_lifetime", ta.max_lifetime, tb.max_lifetime);
  r.field("tcp.header_timeout", ta.header_timeout, tb.header_timeout);
  r.field("tcp.max_connections", ta.max_connections, tb.max_connections);
  r.field("tcp.on_limit", ta.on_limit, tb.on_limit);
  r.field("tcp.queue_timeout", ta.queue_timeout, tb.queue_timeout);
  r.field("tcp.relay", ta.relay, tb.relay);
  r.field("tcp.buffer_size", ta.buffer_size, tb.buffer_size);
  r.field("tcp.proxy_protocol.send", ta.proxy.send, tb.proxy.send);
  r.field("tcp.proxy_protocol.accept", ta.proxy.accept, tb.proxy.accept);
  r.field("tcp.proxy_protocol.trusted", ta.proxy.trusted, tb.proxy.trusted);
  diff_sni_routes(r, ta.sni_routes, tb.sni_routes);
}

// ---- clusters -------------------------------------------------------------------------------

std::string cluster_summary(const cluster& c) {
  std::string s = show(c.policy) + ", " + std::to_string(c.endpoints.size()) + " endpoint" +
                  (c.endpoints.size() == 1 ? "" : "s");
  if (c.discovery) s += " + etcd discovery";
  if (c.protocol != upstream_protocol::http1) s += ", protocol " + show(c.protocol);
  return s;
}

void diff_endpoints(recorder& rec, const cluster& a, const cluster& b, const diff_options& opts) {
  auto find = [](const std::vector<endpoint>& list, const std::string& addr) -> const endpoint* {
    for (const auto& e : list)
      if (e.address == addr) return &e;
    return nullptr;
  };
  for (const auto& eb : b.endpoints) {
    const endpoint* ea = find(a.endpoints, eb.address);
    if (!ea)
      rec.added("endpoint " + eb.address + " added (weight " + std::to_string(eb.weight) + ")");
    else if (ea->weight != eb.weight)
      rec.changed("endpoint " + eb.address + ": weight " + std::to_string(ea->weight) + " -> " +
                  std::to_string(eb.weight));
  }
  // A running instance lists discovered backends with the static ones: those are not removals.
  if (opts.from_running && a.discovery) return;
  for (const auto& ea : a.endpoints)
    if (!find(b.endpoints, ea.address)) rec.removed("endpoint " + ea.address + " removed");
}

void diff_discovery(recorder& r, const std::optional<etcd_discovery>& a,
                    const std::optional<etcd_discovery>& b) {
  if (!a && !b) return;
  if (!a) {
    r.added("discovery added (etcd " + show(b->endpoints) + " prefix " + show(b->prefix) + ")");
    return;
  }
  if (!b) {
    r.removed("discovery removed (endpoints become static only)");
    return;
  }
  r.field("discovery.etcd.endpoints", a->endpoints, b->endpoints);
  r.field("discovery.etcd.prefix", a->prefix, b->prefix);
  r.field("discovery.etcd.username", a->username, b->username);
  r.secret("discovery.etcd.password", a->password, b->password);
  r.field("discovery.etcd.persist", a->persist, b->persist);
  if (a->tls.has_value() != b->tls.has_value()) {
    r.changed(std::string("discovery.etcd.tls: ") + (a->tls ? "on -> off" : "off -> on"));
  } else if (a->tls) {
    r.field("discovery.etcd.tls.ca", a->tls->ca, b->tls->ca);
    r.field("discovery.etcd.tls.cert", a->tls->cert, b->tls->cert);
    r.field("discovery.etcd.tls.key", a->tls->key, b->tls->key);
  }
}

void diff_health(recorder& r, const health_check& a, const health_check& b) {
  r.field("health.type", a.type, b.type);
  if (b.type == health_check::kind::none) return;  // nothing else matters any more
  r.field("health.interval", a.interval, b.interval);
  r.field("health.unhealthy_interval", a.unhealthy_interval, b.unhealthy_interval);
  r.field("health.timeout", a.timeout, b.timeout);
  r.field("health.healthy", a.healthy, b.healthy);
  r.field("health.unhealthy", a.unhealthy, b.unhealthy);
  r.field("health.jitter", a.jitter, b.jitter);
  r.field("health.jitter_fraction", a.jitter_fraction, b.jitter_fraction);
  if (b.type == health_check::kind::grpc) r.field("health.service", a.service, b.service);
  if (b.type != health_check::kind::http) return;
  r.field("health.method", a.method, b.method);
  r.field("health.path", a.path, b.path);
  r.field("health.host", a.host, b.host);
  r.field("health.expect_status", a.expect_status, b.expect_status);
  r.field("health.expect_body", a.expect_body, b.expect_body);
}

void diff_cluster(std::vector<change>& out, const cluster& a, const cluster& b,
                  const diff_options& opts) {
  recorder r(out, "cluster " + b.name);
  r.field("policy", a.policy, b.policy);
  if (b.policy == policy_kind::ring_hash) r.field("hash", a.hash, b.hash);
  r.field("protocol", a.protocol, b.protocol);
  diff_endpoints(r, a, b, opts);
  diff_discovery(r, a.discovery, b.discovery);
  r.field("timeouts.connect", a.timeouts.connect, b.timeouts.connect);
  r.field("timeouts.read", a.timeouts.read, b.timeouts.read);
  r.field("timeouts.write", a.timeouts.write, b.timeouts.write);
  r.field("pool.max_idle", a.pool.max_idle, b.pool.max_idle);
  r.field("pool.idle_timeout", a.pool.idle_timeout, b.pool.idle_timeout);
  diff_health(r, a.health, b.health);
  if (a.outlier.enabled != b.outlier.enabled) {
    r.changed(std::string("outlier: ") + (a.outlier.enabled ? "on -> off" : "off -> on"));
  } else if (b.outlier.enabled) {
    const auto &oa = a.outlier, &ob = b.outlier;
    r.field("outlier.consecutive", oa.consecutive, ob.consecutive);
    if (oa.count_mask != ob.count_mask)
      r.changed("outlier.count: " + show_outlier_count(oa.count_mask) + " -> " +
                show_outlier_count(ob.count_mask));
    r.field("outlier.base_ejection", oa.base_ejection, ob.base_ejection);
    r.field("outlier.max_ejection", oa.max_ejection, ob.max_ejection);
    r.field("outlier.max_ejection_percent", oa.max_ejection_percent, ob.max_ejection_percent);
  }
  r.field("slow_start", a.slow_start, b.slow_start);
  r.field("panic", a.panic, b.panic);
  r.field("max_tries", a.max_tries, b.max_tries);
  r.field("max_connections_per_backend", a.max_connections_per_backend,
          b.max_connections_per_backend);
  if (a.tls && b.tls) {
    r.field("tls.ca", a.tls->ca, b.tls->ca);
    r.field("tls.server_name", a.tls->server_name, b.tls->server_name);
    r.field("tls.verify", a.tls->verify, b.tls->verify);
    r.field("tls.cert", a.tls->cert, b.tls->cert);
    r.field("tls.key", a.tls->key, b.tls->key);
  }
}

// Objects matched by name: changed and added ones in `b`'s order, removed ones after.
template <class T, class Summary, class Compare>
void diff_named(std::vector<change>& out, const char* what, const std::vector<T>& a,
                const std::vector<T>& b, Summary summary, Compare compare) {
  auto find = [](const std::vector<T>& list, const std::string& name) -> const T* {
    for (const auto& x : list)
      if (x.name == name) return &x;
    return nullptr;
  };
  for (const auto& xb : b) {
    if (const T* xa = find(a, xb.name))
      compare(out, *xa, xb);
    else
      out.push_back(change{change::kind::added, std::string(what) + " " + xb.name, summary(xb)});
  }
  for (const auto& xa : a)
    if (!find(b, xa.name))
      out.push_back(change{change::kind::removed, std::string(what) + " " + xa.name, summary(xa)});
}

std::string show_workers(std::uint32_t n) { return n == 0 ? "auto" : std::to_string(n); }

}  // namespace

std::string change::to_string() const {
  const char sign = what == kind::added ? '+' : what == kind::removed ? '-' : '~';
  std::string out(1, sign);
  out += ' ';
  out += subject;
  if (!subject.empty() && !detail.empty()) out += ": ";
  out += detail;
  return out;
}

std::string format_duration(duration d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  if (ms % 1000 != 0 && ms >= 1000) {
    // Mixed seconds and milliseconds: only "ms" reads back exactly.
    return out + std::to_string(ms) + "ms";
  }
  if (ms < 1000) return out + std::to_string(ms) + "ms";
  auto s = ms / 1000;
  const auto h = s / 3600, m = (s % 3600) / 60, sec = s % 60;
  if (h) out += std::to_string(h) + "h";
  if (m) out += std::to_string(m) + "m";
  if (sec) out += std::to_string(sec) + "s";
  return out;
}

std::vector<change> diff(const config& from, const config& to, const diff_options& opts) {
  std::vector<change> out;
  recorder top(out, "");
  if (from.workers != to.workers)
    top.changed("workers: " + show_workers(from.workers) + " -> " + show_workers(to.workers));
  top.field("drain_timeout", from.drain_timeout, to.drain_timeout);
  top.field("upgrade_socket", from.upgrade_socket, to.upgrade_socket);
  top.field("admin.address", from.admin.address, to.admin.address);
  top.secret("admin.token", from.admin.token, to.admin.token);
  top.field("metrics.enabled", from.metrics.enabled, to.metrics.enabled);
  top.field("log.error_log", from.log.error_log, to.log.error_log);
  top.field("log.level", from.log.level, to.log.level);
  top.field("log.access.path", from.log.access.path, to.log.access.path);
  top.field("log.access.format", from.log.access.format, to.log.access.format);

  diff_named(out, "listener", from.listeners, to.listeners, listener_summary, diff_listener);
  diff_named(out, "cluster", from.clusters, to.clusters, cluster_summary,
             [&](std::vector<change>& o, const cluster& a, const cluster& b) {
               diff_cluster(o, a, b, opts);
             });
  return out;
}

config status_view(const config& c) {
  config v;
  v.file = c.file;
  for (const auto& l : c.listeners) {
    listener x;
    x.name = l.name;
    x.address = l.address;
    x.protocol = l.protocol;
    if (l.protocol == listener::protocol_kind::tcp) x.cluster = l.cluster;
    for (const auto& r : l.routes) {
      route y;
      y.match = r.match;
      y.cluster = r.cluster;
      if (r.direct) y.direct = direct_response{r.direct->status, {}, direct_response{}.content_type};
      x.routes.push_back(std::move(y));
    }
    v.listeners.push_back(std::move(x));
  }
  for (const auto& k : c.clusters) {
    cluster x;
    x.name = k.name;
    x.policy = k.policy;
    x.protocol = k.protocol;
    x.health.type = k.health.type;
    if (k.discovery) x.discovery = etcd_discovery{};
    x.endpoints = k.endpoints;
    v.clusters.push_back(std::move(x));
  }
  return v;
}

}  // namespace sluice::config
