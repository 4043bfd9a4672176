// Plain value types for the whole configuration; loader.hpp fills them from YAML.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/cidr.hpp"

namespace sluice::config {

using duration = std::chrono::milliseconds;
using namespace std::chrono_literals;

/// One upstream endpoint as configured ("host:port" or {address, weight}).
struct endpoint {
  std::string address;
  std::uint32_t weight = 1;  ///< 1..1000
};

enum class policy_kind { round_robin, least_conn, random, p2c, ring_hash };

/// What ring_hash hashes on.
struct hash_on {
  enum class kind { client_ip, header, cookie } what = kind::client_ip;
  std::string name;  ///< header or cookie name; empty for client_ip
};

enum class upstream_protocol { http1, h2c, h2 };

/// An inclusive range of HTTP status codes (a single code has lo == hi).
struct status_range {
  std::uint32_t lo = 200;
  std::uint32_t hi = 399;
};

/// Active health checks: one probe per backend per interval, on the control thread.
struct health_check {
  enum class kind { none, tcp, http, grpc } type = kind::none;
  duration interval = 2s;
  duration unhealthy_interval = 0ms;  ///< between checks while unhealthy; 0 = `interval`
  duration timeout = 1s;
  std::uint32_t healthy = 2;    ///< consecutive successes to become healthy
  std::uint32_t unhealthy = 3;  ///< consecutive failures to become unhealthy
  /// Spread: each wait is drawn from [base - j/2, base + j/2] where j is `jitter` when set,
  /// else jitter_fraction * base.
  duration jitter = 0ms;
  double jitter_fraction = 0.0;  ///< 0..1
  std::string method = "GET";    ///< http only
  std::string path = "/";        ///< http only
  std::string host;              ///< http only: Host header; empty = the backend's address
  std::vector<status_range> expect_status{status_range{}};  ///< http only; default 200-399
  std::string expect_body;       ///< http only: substring the body must contain; empty = any
  std::string service;           ///< grpc only: HealthCheckRequest.service; empty = the server
};

/// Passive health (outlier ejection) fed by real traffic.
struct outlier_detection {
  /// On when the `outlier` section is present (unless `enabled: false`), and by default for
  /// clusters with discovery.
  bool enabled = false;
  std::uint32_t consecutive = 5;   ///< failures in a row that eject a backend
  /// Which request outcomes count as failures: bits of core::outcome
  /// (1 connect_failure, 2 reset, 3 timeout, 4 http_5xx); default connect_failure|reset|timeout.
  std::uint8_t count_mask = 0b01110;
  duration base_ejection = 30s;    ///< n-th ejection in a row lasts base * n ...
  duration max_ejection = 300s;    ///< ... capped here
  std::uint32_t max_ejection_percent = 50;  ///< of the cluster ejected at once (at least one)
};

/// What a cluster does when no backend is ready.
enum class panic_mode { fail, spread };

/// TLS towards etcd (client side). Empty `ca`: the system's trusted roots.
struct etcd_tls {
  std::string ca;    ///< PEM file of the CA that signed etcd's certificate
  std::string cert;  ///< PEM client certificate (with `key`), for etcd's --client-cert-auth
  std::string key;
};

struct etcd_discovery {
  std::vector<std::string> endpoints;  ///< "host:port"
  std::string prefix = "/nodes/";
  std::optional<etcd_tls> tls;         ///< unset: plain http://
  std::string username;                ///< empty: no authentication
  std::string password;
  std::string persist;                 ///< file keeping the last known set; empty: none
};

struct cluster_timeouts {
  duration connect = 5s;  ///< TCP connect to one upstream
  duration read = 60s;    ///< between two reads from the upstream (nginx proxy_read_timeout)
  duration write = 60s;   ///< between two writes to the upstream (nginx proxy_send_timeout)
};

/// Per-worker keep-alive pool of idle upstream connections, per backend.
struct upstream_pool {
  std::uint32_t max_idle = 64;  ///< idle connections kept per backend per worker
  duration idle_timeout = 60s;  ///< an idle pooled connection is closed after this
};

/// TLS toward the backends of a `protocol: h2` cluster (the cluster's `tls:` block). ALPN
/// offers h2 only.
struct upstream_tls {
  std::string ca;           ///< PEM file of the trusted CAs; empty: the system's trusted roots
  std::string server_name;  ///< SNI and the name verified; empty: each endpoint's host
  bool verify = true;       ///< verify the backend's certificate (chain and name)
  std::string cert;         ///< PEM client certificate (with `key`), for backends asking one
  std::string key;
};

struct cluster {
  std::string name;
  policy_kind policy = policy_kind::round_robin;
  hash_on hash;  ///< ring_hash only
  upstream_protocol protocol = upstream_protocol::http1;
  std::vector<endpoint> endpoints;
  std::optional<etcd_discovery> discovery;
  cluster_timeouts timeouts;
  upstream_pool pool;
  health_check health;
  outlier_detection outlier;
  duration slow_start = 0ms;           ///< weight ramp for a joining/recovering backend; 0 = off
  panic_mode panic = panic_mode::fail;  ///< no ready backend: fail (503) or spread over all
  std::uint32_t max_tries = 3;  ///< attempts per request, first included (nginx proxy_next_upstream_tries)
  /// Open TCP connections allowed per backend (tcp listeners, counted across workers);
  /// 0 = unlimited. A full backend is skipped like an excluded one.
  std::uint32_t max_connections_per_backend = 0;
  /// protocol h2 only (always set there, defaults included); unset for http1 and h2c.
  std::optional<upstream_tls> tls;
};

struct route_match {
  std::string host;               ///< empty: any host; "example.com" exact; "*.example.com" suffix
  std::string path_prefix = "/";
};

/// A fixed answer a route can give instead of proxying (e.g. for a health URL).
struct direct_response {
  std::uint32_t status = 200;
  std::string body;
  std::string content_type = "text/plain";
};

struct route {
  route_match match;
  std::string cluster;                   ///< empty when `direct` is set
  std::optional<direct_response> direct;
  /// The `route` label of its metrics, unique per listener; empty: derived from the match
  /// (see route_label.hpp).
  std::string name;
};

struct listener_timeouts {
  duration header = 60s;  ///< whole request head must arrive within this (nginx client_header_timeout)
  duration idle = 75s;    ///< keep-alive idle between requests (nginx keepalive_timeout)
  duration body = 60s;    ///< between two reads of a request body (nginx client_body_timeout)
  duration send = 60s;    ///< between two writes to the client (nginx send_timeout)
};

struct listener_limits {
  std::uint32_t max_request_line = 8192;     ///< larger → 414
  std::uint32_t max_header_bytes = 32768;    ///< whole head; larger → 431
  std::uint32_t max_headers = 100;           ///< field count; more → 431
  std::uint64_t max_body = 0;                ///< bytes; 0 = unlimited; larger → 413
  std::uint32_t max_keepalive_requests = 1000;  ///< then Connection: close (nginx keepalive_requests)
  /// Request header fields whose name has '_' (`headers_with_underscores`): dropped (nginx's
  /// default), forwarded, or the request refused with 400. A CGI-style upstream maps '-' and
  /// '_' to the same variable, so "Content_Length" could pass for Content-Length there.
  enum class underscore_action : std::uint8_t { drop, allow, reject };
  underscore_action underscores = underscore_action::drop;
};

/// PROXY protocol (HAProxy's proxy-protocol.txt) on a tcp listener.
struct proxy_protocol {
  enum class version { none, v1, v2 };
  version send = version::none;  ///< header written to each upstream before any client byte
  /// Connections from `trusted` sources must start with a v1 or v2 header (missing or malformed
  /// → closed); the address it carries replaces the peer's. Other sources are served as is.
  bool accept = false;
  std::vector<core::cidr> trusted;
};

/// TLS passthrough: a ClientHello whose server_name matches goes to `cluster`.
struct sni_route {
  std::string server_name;  ///< "db.example.com" exact, or "*.example.com" (any deeper name)
  std::string cluster;
};

/// Options of a tcp listener (the `tcp:` block).
struct tcp_options {
  duration idle_timeout = 10min;     ///< no byte either way for this long → close (nginx proxy_timeout)
  duration max_lifetime = 0ms;       ///< 0 = unlimited
  duration header_timeout = 5s;      ///< PROXY header / TLS ClientHello must arrive within this
  std::uint32_t max_connections = 0; ///< open connections on this listener, all workers; 0 = unlimited
  enum class limit_action { refuse, queue };
  limit_action on_limit = limit_action::refuse;  ///< over a limit: close at once, or wait
  duration queue_timeout = 1s;       ///< longest wait for a slot with on_limit: queue
  /// splice(2) through a pipe, copy through a buffer, or buffer first and splice a direction
  /// once it has moved enough bytes (auto)
  enum class relay_mode { splice, buffer, automatic };
  relay_mode relay = relay_mode::automatic;
  std::uint32_t buffer_size = 65536;     ///< buffered relay: bytes in flight per direction
  /// splice relay: pipe capacity per direction (bytes in flight); larger pipes need fewer
  /// splice(2) calls per byte (64 KiB: 1.22 GiB/s, 256 KiB: 1.44 GiB/s on the bench VM)
  std::uint32_t pipe_size = 262144;
  proxy_protocol proxy;
  std::vector<sni_route> sni_routes;     ///< empty: no ClientHello inspection
};

/// HTTP/2 on an http listener (h2c with prior knowledge, gRPC): limits per downstream connection.
struct http2_options {
  std::uint32_t max_concurrent_streams = 100;   ///< SETTINGS_MAX_CONCURRENT_STREAMS
  std::uint32_t max_header_list_size = 65536;   ///< decoded header bytes per block; more → stream reset
  std::uint32_t stream_window = 262144;         ///< receive window per stream: bytes buffered per stream
  std::uint32_t reset_burst = 1000;  ///< rapid reset: RST_STREAM budget (token bucket burst) ...
  std::uint32_t reset_rate = 33;     ///< ... refilled per second; exhausted → GOAWAY(ENHANCE_YOUR_CALM)
  duration max_connection_age = 0ms; ///< then a graceful GOAWAY; 0 = unlimited
};

/// One certificate of a TLS listener, with the names it is chosen for. The loader resolves
/// relative paths against the configuration file's directory.
struct tls_certificate {
  std::string cert;  ///< PEM file: the certificate, then its chain
  std::string key;   ///< PEM file: its unencrypted private key
  /// SNI names served with this certificate: "a.example.com" exact, "*.example.com" (one more
  /// label). Empty: the certificate's own DNS names (subjectAltName, else its CN), read when the
  /// listener's TLS contexts are built.
  std::vector<std::string> server_names;
};

/// TLS termination on an http listener (the `tls:` block).
struct tls_options {
  /// At least one; the first answers clients without SNI or with a name no other one claims.
  std::vector<tls_certificate> certificates;
  std::vector<std::string> alpn{"h2", "http/1.1"};  ///< offered in this order of preference
  enum class version { tls1_2, tls1_3 };
  version min_version = version::tls1_2;
  std::string ciphers;  ///< TLS 1.2 cipher list (OpenSSL syntax); empty: ECDHE with AEAD only
  duration handshake_timeout = 10s;
};

struct listener {
  std::string name;
  std::string address;  ///< "host:port"; port 0 lets the kernel choose
  enum class protocol_kind { http, tcp } protocol = protocol_kind::http;
  std::vector<route> routes;  ///< http
  std::string cluster;        ///< tcp: the cluster (the fallback when sni_routes is set; may then be empty)
  tcp_options tcp;            ///< tcp only
  listener_timeouts timeouts;
  listener_limits limits;
  http2_options http2;     ///< http only
  bool forwarded = false;  ///< also add an RFC 7239 Forwarded header
  std::optional<tls_options> tls;  ///< http only; unset: cleartext
};

struct access_log {
  std::string path = "stdout";  ///< file path, "stdout", "stderr" or "off"
  std::string format = "combined";
};

struct logging {
  std::string error_log = "stderr";  ///< file path, "stdout" or "stderr"
  std::string level = "info";        ///< debug | info | warn | error
  access_log access;
};

struct admin {
  std::string address;  ///< empty: no admin listener
  std::string token;    ///< bearer token for the admin API; required off loopback
};

/// Request metrics (the admin listener serves /metrics either way).
struct metrics {
  bool enabled = true;  ///< false: workers count nothing (benchmark baseline)
};

struct config {
  std::string file;  ///< where it was loaded from
  std::uint32_t workers = 0;  ///< 0 = one per core ("auto")
  duration drain_timeout = 30s;
  /// Unix socket where the running process hands its listening sockets to `sluice --upgrade`
  /// (binary upgrade). Empty: off.
  std::string upgrade_socket;
  ::sluice::config::admin admin;  // qualified: a member may not change what `admin` means here
  ::sluice::config::metrics metrics;
  logging log;
  std::vector<listener> listeners;
  std::vector<cluster> clusters;

  const cluster* find_cluster(const std::string& name) const noexcept {
    for (const auto& c : clusters)
      if (c.name == name) return &c;
    return nullptr;
  }
};

}  // namespace sluice::config
