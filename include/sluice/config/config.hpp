// Plain value types for the whole configuration; loader.hpp fills them from YAML.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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

struct health_check {
  enum class kind { none, tcp, http, grpc } type = kind::none;
  duration interval = 2s;
  duration timeout = 1s;
  std::uint32_t healthy = 2;    ///< consecutive successes to become healthy
  std::uint32_t unhealthy = 3;  ///< consecutive failures to become unhealthy
  std::string path = "/";       ///< http only
};

struct etcd_discovery {
  std::vector<std::string> endpoints;  ///< "host:port"
  std::string prefix = "/nodes/";
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
  std::uint32_t max_tries = 3;  ///< attempts per request, first included (nginx proxy_next_upstream_tries)
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
};

struct listener {
  std::string name;
  std::string address;  ///< "host:port"; port 0 lets the kernel choose
  enum class protocol_kind { http, tcp } protocol = protocol_kind::http;
  std::vector<route> routes;  ///< http
  std::string cluster;        ///< tcp
  listener_timeouts timeouts;
  listener_limits limits;
  bool forwarded = false;  ///< also add an RFC 7239 Forwarded header
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
};

struct config {
  std::string file;  ///< where it was loaded from
  std::uint32_t workers = 0;  ///< 0 = one per core ("auto")
  duration drain_timeout = 30s;
  admin admin;
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
