// The acceptors of a listener: on each worker an accept loop on that worker's own
// SO_REUSEPORT socket, and what they share to hand a connection to a less loaded worker.
// Internal header: includes Asio.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/runtime.hpp"

namespace sluice::net {

/// What the acceptors of one listener share: the spec, every worker's context, and the
/// connections handed to each worker but not yet started there.
class listener_share;

std::shared_ptr<listener_share> make_listener_share(
    const listen_spec& spec, const std::vector<std::unique_ptr<boost::asio::io_context>>& ios);

/// One listener's accept loop on one worker.
class acceptor {
 public:
  virtual ~acceptor() = default;
  /// Starts accepting (on the worker's thread).
  virtual void start() = 0;
  /// The listener's name (any thread).
  virtual const std::string& name() const noexcept = 0;
  /// The listening socket while open, else -1 (any thread).
  virtual int fd() const noexcept = 0;
  /// Closes the listening socket in this process only (on the worker's thread).
  virtual void close() = 0;
};

/// An accept loop on worker `worker` (whose context is `io`) for the listening socket `acc`;
/// connections go to `share`'s spec, on this worker or handed to a less loaded one.
std::shared_ptr<acceptor> make_acceptor(boost::asio::io_context& io, unsigned worker,
                                        boost::asio::ip::tcp::acceptor acc,
                                        std::shared_ptr<listener_share> share);

}  // namespace sluice::net
