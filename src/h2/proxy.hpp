// Entry points of the HTTP/2 (h2c, gRPC) data plane. Internal header: includes Asio.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "sluice/log/access_log.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::http {
struct listener_state;
}
namespace sluice::metrics {
class worker_shard;
}

namespace sluice::h2 {

/// Where a worker's HTTP/2 streams are counted and logged: the worker's metrics shard and access
/// log writer (either may be null), owned by `owner` (the worker's HTTP/1.1 state, which the
/// worker's HTTP/2 state then keeps alive). Used on the worker's thread only. The connection
/// was counted open (on_connection_open) by the caller; the HTTP/2 side counts it closed.
struct observers {
  metrics::worker_shard* metrics = nullptr;
  log::access_log::writer* access_log = nullptr;
  std::shared_ptr<void> owner;
};

/// Serves one downstream HTTP/2 connection whose first bytes (`already_read`, which start with
/// the client preface) were already read from `socket`. Call on worker `worker_index`'s thread;
/// routes resolve through `listener` (refreshed per stream from http::current_listener). The
/// per-worker state (upstream HTTP/2 connections) is kept per thread and built on first use.
void start_server_session(boost::asio::ip::tcp::socket socket, std::string_view already_read,
                          std::shared_ptr<const http::listener_state> listener,
                          unsigned worker_index, const observers& obs = {});
/// The same over TLS: `stream` finished its handshake with ALPN "h2" (`already_read` is then
/// usually empty: the preface is read from the stream).
void start_server_session(boost::asio::ssl::stream<boost::asio::ip::tcp::socket> stream,
                          std::string_view already_read,
                          std::shared_ptr<const http::listener_state> listener,
                          unsigned worker_index, const observers& obs = {});

/// Graceful drain of this thread's HTTP/2 sessions (call on each worker's thread): GOAWAY, open
/// streams finish, idle connections close.
void drain();

/// Downstream HTTP/2 connections open, all workers (safe from any thread).
std::size_t active_sessions() noexcept;
/// Those served by worker `worker` (safe from any thread): part of its load for the accept
/// hand-off.
std::size_t active_sessions(unsigned worker) noexcept;

}  // namespace sluice::h2
