// Entry points of the HTTP/2 (h2c, gRPC) data plane. Internal header: includes Asio.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "sluice/pool/cluster.hpp"

namespace sluice::http {
struct listener_state;
}

namespace sluice::h2 {

/// Serves one downstream HTTP/2 connection whose first bytes (`already_read`, which start with
/// the client preface) were already read from `socket`. Call on the worker's thread; `clusters`
/// is the worker's cluster list, indexed like `listener->route_cluster`. The per-worker state
/// (snapshot caches, upstream HTTP/2 connections) is kept per thread and built on first use.
void start_server_session(boost::asio::ip::tcp::socket socket, std::string_view already_read,
                          std::shared_ptr<const http::listener_state> listener,
                          const std::vector<std::shared_ptr<pool::cluster>>& clusters);

/// Graceful drain of this thread's HTTP/2 sessions (call on each worker's thread): GOAWAY, open
/// streams finish, idle connections close.
void drain();

/// Downstream HTTP/2 connections open, all workers (safe from any thread).
std::size_t active_sessions() noexcept;

}  // namespace sluice::h2
