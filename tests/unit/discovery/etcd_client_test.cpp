#include "discovery/etcd_client.hpp"

#include <catch2/catch.hpp>

#include <string>

#include "sluice/config/config.hpp"

using sluice::discovery::etcd::explain_gateway_error;
using sluice::discovery::etcd::make_tls_context;

TEST_CASE("explain_gateway_error: the clientAuth hint only for code 14 over TLS", "[discovery][etcd_client]") {
  const std::string closed = "reading /nodes/: etcd error 14: connection closed";
  CHECK(explain_gateway_error(closed, false) == closed);
  const std::string explained = explain_gateway_error(closed, true);
  CHECK(explained.rfind(closed, 0) == 0);
  CHECK(explained.find("extendedKeyUsage clientAuth") != std::string::npos);
  const std::string other = "reading /nodes/: etcd error 7: etcdserver: permission denied";
  CHECK(explain_gateway_error(other, true) == other);
}

TEST_CASE("make_tls_context: unreadable files are errors naming the file", "[discovery][etcd_client]") {
  sluice::config::etcd_tls tls;
  tls.ca = "/nonexistent/ca.pem";
  std::string err;
  CHECK(make_tls_context(tls, &err) == nullptr);
  CHECK(err.find("/nonexistent/ca.pem") != std::string::npos);

  sluice::config::etcd_tls client;
  client.cert = "/nonexistent/client.pem";
  client.key = "/nonexistent/client.key";
  err.clear();
  CHECK(make_tls_context(client, &err) == nullptr);
  CHECK(err.find("tls.cert") != std::string::npos);

  sluice::config::etcd_tls system_roots;  // no ca: the system's roots
  err.clear();
  CHECK(make_tls_context(system_roots, &err) != nullptr);
}
