// Worker threads (one io_context each), SO_REUSEPORT listeners per worker, signals and drain.
// Internal header: includes Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sluice/core/address.hpp"

namespace sluice::net {

/// Called on the accepting worker's thread with the new connection. The socket is in
/// non-blocking mode (`non_blocking()` is true: synchronous operations return would_block) and
/// close-on-exec.
using accept_handler =
    std::function<void(unsigned worker, boost::asio::ip::tcp::socket socket)>;

struct listen_spec {
  std::string name;
  core::address address;  ///< port 0: the kernel picks one port, shared by every worker
  accept_handler on_accept;
  /// Connections a worker serves now, for spreading them by load (called on any worker's
  /// thread; must be cheap and thread-safe). Unset: each worker keeps what it accepts.
  std::function<std::size_t(unsigned worker)> load;
  /// Listening sockets taken over from a previous process (binary upgrade), already bound to
  /// `address` (same family; their port wins over address's). `listen` owns them from the
  /// call on, even when it throws. Spread over the workers; workers left without one bind
  /// their own SO_REUSEPORT socket on the same port.
  std::vector<int> inherited_fds;
};

/// A listener's open listening sockets (one per worker, or as inherited).
struct listener_fds {
  std::string name;
  std::vector<int> fds;
};

/// Runs N workers. Every listener gets one acceptor per worker bound with SO_REUSEPORT, so the
/// kernel spreads connections and no lock sits between accept and the session. The kernel
/// spreads them by a hash of their addresses, not by load: a worker that accepts a connection
/// while it serves `handoff_margin` or more connections than the least loaded worker (by
/// listen_spec::load) hands it to that worker, posting the descriptor to its context.
class runtime {
 public:
  static constexpr std::size_t handoff_margin = 2;
  explicit runtime(unsigned workers);
  ~runtime();

  unsigned workers() const noexcept { return static_cast<unsigned>(ios_.size()); }
  /// A worker's context. Its sockets must only be used on that worker's thread (post to it
  /// from elsewhere): the context runs without the reactor's per-socket locks.
  boost::asio::io_context& io(unsigned worker) { return *ios_[worker]; }
  /// The control-plane context (signals, admin, discovery, health); runs on its own thread.
  boost::asio::io_context& control() { return control_; }

  /// Binds the listener on every worker; returns the bound port or throws std::system_error
  /// with a message naming the address.
  std::uint16_t listen(const listen_spec& spec);
  /// Stops accepting on the listener named `name` (every worker) and closes its sockets;
  /// connections already accepted are not touched. Thread-safe; a no-op for unknown names.
  void unlisten(const std::string& name);
  /// The listening sockets of every listener, by name, in listen order; empty once draining.
  /// The descriptors stay owned by the runtime and valid until that listener is closed (by
  /// unlisten or the drain). Thread-safe.
  std::vector<listener_fds> listening_fds() const;
  /// True once the drain has started (stop() or a stop signal).
  bool draining() const noexcept;

  /// Called on the control thread when SIGTERM/SIGINT/SIGQUIT arrives (after acceptors are
  /// closed). It must arrange for `active()` to reach zero; `run()` returns when it does or
  /// when `drain_timeout` passes.
  void on_drain(std::function<void()> f) { on_drain_ = std::move(f); }
  /// Number of connections still being served (summed by the caller's counter).
  void active_counter(std::function<std::size_t()> f) { active_ = std::move(f); }
  void on_sighup(std::function<void()> f) { on_sighup_ = std::move(f); }
  void on_sigusr1(std::function<void()> f) { on_sigusr1_ = std::move(f); }

  /// Runs every worker and the control thread until drained. Returns the exit status.
  int run(std::chrono::milliseconds drain_timeout);
  /// Starts the drain as if SIGTERM had arrived (thread-safe).
  void stop();

 private:
  struct impl;
  std::vector<std::unique_ptr<boost::asio::io_context>> ios_;
  boost::asio::io_context control_{1};
  std::unique_ptr<impl> impl_;
  std::function<void()> on_drain_, on_sighup_, on_sigusr1_;
  std::function<std::size_t()> active_;
};

}  // namespace sluice::net
