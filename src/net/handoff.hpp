// Binary upgrade: a running sluice hands its listening sockets to its successor over a Unix socket.
// Internal header: includes Asio.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include <boost/asio/io_context.hpp>

#include "net/runtime.hpp"
#include "sluice/core/address.hpp"

namespace sluice::net {

/// The wire protocol, on a connected AF_UNIX SOCK_SEQPACKET socket (one message per packet, so
/// descriptors always arrive with the message that counts them). Every message starts with
/// "SLHO", version 1 and a type byte; integers are big-endian.
///   old -> new  'L' u16 name length, name, u16 n, and n descriptors (SCM_RIGHTS, 1..64).
///                   A listener with more than 64 sockets comes as consecutive 'L' messages.
///   old -> new  'E' u32 listeners, u32 descriptors: the end of the list, with its totals.
///   old -> new  'R' text: refused (another upgrade in progress, draining, wrong user).
///   new -> old  'G' go: the successor is listening; stop accepting and drain.
///   old -> new  'A' the old process stopped accepting and released the upgrade socket path.
/// Anything else, a truncated packet, a count that does not match the descriptors, a name
/// outside [A-Za-z0-9_.-], more than `max_listeners` listeners or `max_fds` descriptors, or a
/// descriptor that is not a listening TCP socket is an error; descriptors already received are
/// closed then.
namespace handoff {

inline constexpr std::size_t max_message = 4096;
inline constexpr std::size_t max_fds_per_message = 64;
inline constexpr std::size_t max_listeners = 1024;
inline constexpr std::size_t max_fds = 16384;
inline constexpr std::size_t max_name = 255;

/// Sends `listeners` then the end marker. The descriptors stay open here. Blocking on a
/// blocking socket (bound by its SO_SNDTIMEO). Returns false with *error on failure.
bool send_listeners(int fd, const std::vector<listener_fds>& listeners, std::string* error);

/// Receives what send_listeners sent (or a refusal, as an error). The descriptors returned are
/// owned by the caller and close-on-exec. Bounded by the socket's SO_RCVTIMEO.
std::optional<std::vector<listener_fds>> receive_listeners(int fd, std::string* error);

/// 'G', 'A' or 'R' (with `text`, at most 1024 bytes).
bool send_control(int fd, char type, std::string_view text, std::string* error);

struct control_message {
  char type = 0;
  std::string text;
};
/// One 'G', 'A' or 'R' message. nullopt with *error on EOF, timeout or a malformed message
/// (a message carrying descriptors is malformed: they are closed).
std::optional<control_message> receive_control(int fd, std::string* error);

}  // namespace handoff

/// The running process's side: accepts on the Unix socket `path` on the control thread and
/// hands its listening sockets to one successor at a time. When the successor says go, it
/// calls `on_go` (stop accepting and drain), stops accepting on `path` without removing it
/// (the successor replaces it) and acknowledges. A successor that disconnects or stays silent
/// for 60 s changes nothing. Only a peer with our uid (or root) is served.
/// Thread-safety: start, close and the destructor on the control thread (or before it runs).
class handoff_server {
 public:
  struct hooks {
    /// The sockets to hand over (the admin listener under the name "admin"). Empty: refuse
    /// (draining). Called on the control thread.
    std::function<std::vector<listener_fds>()> listeners;
    /// The successor is listening: stop accepting and drain. Called on the control thread.
    std::function<void()> on_go;
  };

  /// Listens on `path` (mode 0600). With `replace` (the successor of a hand-off) a socket
  /// already at `path` is removed first; otherwise a socket there that still accepts is an
  /// error and a stale one is removed. Anything at `path` that is not a socket is an error.
  /// Returns null with *error when it cannot listen.
  static std::unique_ptr<handoff_server> start(boost::asio::io_context& control,
                                               const std::string& path, hooks h, bool replace,
                                               std::string* error);
  ~handoff_server();
  handoff_server(const handoff_server&) = delete;
  handoff_server& operator=(const handoff_server&) = delete;

  /// Stops accepting; removes `path` unless it was handed over or is no longer ours.
  void close();

  struct impl;

 private:
  explicit handoff_server(std::shared_ptr<impl> i) : impl_(std::move(i)) {}
  std::shared_ptr<impl> impl_;
};

/// The successor's side (`sluice --upgrade`), used before its workers run. Blocking.
class handoff_client {
 public:
  /// Connects to `path` and receives the running process's listening sockets. Null with
  /// *error (what failed, for the operator) on failure.
  static std::unique_ptr<handoff_client> connect(const std::string& path,
                                                 std::chrono::milliseconds timeout,
                                                 std::string* error);
  /// Closes the descriptors nobody took and the connection: the running process, not told to
  /// go, keeps serving.
  ~handoff_client();
  handoff_client(const handoff_client&) = delete;
  handoff_client& operator=(const handoff_client&) = delete;

  /// The inherited sockets of listener `name` when they are bound to `address` (same family
  /// and IP; a port 0 in `address` matches any port). The caller owns them from then on.
  /// Empty (and a log line saying why) when there is no such listener or it is elsewhere.
  std::vector<int> take(const std::string& name, const core::address& address);

  /// Tells the running process to stop accepting and drain, and waits for it to acknowledge.
  /// False with *error when it could not be told (it keeps serving). A missing acknowledgement
  /// after a sent go is only logged (true): the old process may already be draining, so this
  /// one must serve.
  bool go(std::string* error);

  pid_t peer_pid() const noexcept { return peer_pid_; }
  std::size_t listener_count() const noexcept { return listeners_.size(); }

 private:
  handoff_client() = default;
  int fd_ = -1;
  pid_t peer_pid_ = 0;
  std::chrono::milliseconds timeout_{};
  std::vector<listener_fds> listeners_;
};

}  // namespace sluice::net
