#include "net/handoff.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/seq_packet_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sluice/log/log.hpp"

namespace sluice::net {

namespace asio = boost::asio;
// Asio has no local::seq_packet_protocol; the generic one over AF_UNIX is the same thing.
using seqpacket = asio::generic::seq_packet_protocol;
using seqpacket_acceptor = asio::basic_socket_acceptor<seqpacket>;

namespace handoff {
namespace {

constexpr char magic[4] = {'S', 'L', 'H', 'O'};
constexpr unsigned char version = 1;
constexpr std::size_t header_size = 6;
constexpr std::size_t max_text = 1024;

bool fail(std::string* error, std::string text) {
  if (error) *error = std::move(text);
  return false;
}

std::string sys_error(const char* what, int err) { return std::string(what) + ": " + std::strerror(err); }

void close_all(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

void close_all(const std::vector<listener_fds>& ls) {
  for (const auto& l : ls) close_all(l.fds);
}

void put16(std::string& out, std::size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

void put32(std::string& out, std::size_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::string header(char type) {
  std::string h(magic, sizeof magic);
  h.push_back(static_cast<char>(version));
  h.push_back(type);
  return h;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > max_name) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
  });
}

// Peer text goes into our log: control characters and the like become '?'.
std::string printable(std::string s) {
  for (auto& ch : s)
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) >= 0x7f) ch = '?';
  return s;
}

// A reader over one received packet.
class cursor {
 public:
  cursor(const unsigned char* p, std::size_t n) : p_(p), n_(n) {}
  bool u16(std::size_t& v) {
    if (n_ - i_ < 2) return false;
    v = (std::size_t{p_[i_]} << 8) | p_[i_ + 1];
    i_ += 2;
    return true;
  }
  bool u32(std::size_t& v) {
    if (n_ - i_ < 4) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | p_[i_ + k];
    i_ += 4;
    return true;
  }
  bool bytes(std::size_t len, std::string& out) {
    if (n_ - i_ < len) return false;
    out.assign(reinterpret_cast<const char*>(p_ + i_), len);
    i_ += len;
    return true;
  }
  std::string rest() {
    std::string out(reinterpret_cast<const char*>(p_ + i_), n_ - i_);
    i_ = n_;
    return out;
  }
  bool done() const { return i_ == n_; }

 private:
  const unsigned char* p_;
  std::size_t n_;
  std::size_t i_ = header_size;
};

bool send_packet(int fd, const std::string& data, const int* fds, std::size_t nfds,
                 std::string* error) {
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * max_fds_per_message)> control{};
  if (nfds > 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(data.size())) return true;
    if (n >= 0) return fail(error, "short write on the upgrade socket");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // A non-blocking socket whose buffer is full: wait a little, bounded.
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 2000) > 0) continue;
      return fail(error, "timed out writing to the upgrade socket");
    }
    return fail(error, sys_error("sendmsg", errno));
  }
}

struct packet {
  std::array<unsigned char, max_message> data;
  std::size_t size = 0;
  std::vector<int> fds;  // owned until moved out
};

// Receives one packet with its descriptors. False with *error (descriptors closed) on EOF,
// timeout, truncation or a bad header.
bool receive_packet(int fd, packet& p, std::string* error) {
  iovec iov{p.data.data(), p.data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * max_fds_per_message)> control{};
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return fail(error, "timed out waiting for the other process");
    return fail(error, sys_error("recvmsg", errno));
  }
  p.fds.clear();
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      p.fds.push_back(received);
    }
  }
  auto bad = [&](std::string why) {
    close_all(p.fds);
    p.fds.clear();
    return fail(error, std::move(why));
  };
  if (n == 0) return bad("the other process closed the upgrade connection");
  if (msg.msg_flags & MSG_TRUNC) return bad("malformed hand-off message: too long");
  if (msg.msg_flags & MSG_CTRUNC) return bad("malformed hand-off message: too many descriptors");
  p.size = static_cast<std::size_t>(n);
  if (p.size < header_size || std::memcmp(p.data.data(), magic, sizeof magic) != 0)
    return bad("malformed hand-off message: not a sluice upgrade peer");
  if (p.data[4] != version)
    return bad("unsupported hand-off protocol version " + std::to_string(p.data[4]));
  return true;
}

// A descriptor from the peer must be a listening IPv4/IPv6 TCP socket.
bool listening_tcp(int fd) {
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0 || value != 1) return false;
  len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) != 0 || value != SOCK_STREAM)
    return false;
  len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) != 0 ||
      (value != AF_INET && value != AF_INET6))
    return false;
  return true;
}

}  // namespace

bool send_listeners(int fd, const std::vector<listener_fds>& listeners, std::string* error) {
  std::size_t total = 0;
  if (listeners.size() > max_listeners) return fail(error, "too many listeners to hand over");
  for (const auto& l : listeners) {
    if (!valid_name(l.name)) return fail(error, "listener name '" + l.name + "' cannot be sent");
    for (std::size_t i = 0; i < l.fds.size(); i += max_fds_per_message) {
      const std::size_t n = std::min(max_fds_per_message, l.fds.size() - i);
      std::string m = header('L');
      put16(m, l.name.size());
      m += l.name;
      put16(m, n);
      if (!send_packet(fd, m, l.fds.data() + i, n, error)) return false;
    }
    total += l.fds.size();
  }
  if (total > max_fds) return fail(error, "too many sockets to hand over");
  std::string end = header('E');
  put32(end, listeners.size());
  put32(end, total);
  return send_packet(fd, end, nullptr, 0, error);
}

std::optional<std::vector<listener_fds>> receive_listeners(int fd, std::string* error) {
  std::vector<listener_fds> out;
  std::size_t total = 0;
  auto bad = [&](std::string why) -> std::optional<std::vector<listener_fds>> {
    close_all(out);
    fail(error, std::move(why));
    return std::nullopt;
  };
  auto p = std::make_unique<packet>();
  for (;;) {
    std::string err;
    if (!receive_packet(fd, *p, &err)) return bad(err);
    // From here the packet's descriptors are closed by `reject` unless moved into `out`.
    auto reject = [&](std::string why) {
      close_all(p->fds);
      p->fds.clear();
      return bad("malformed hand-off message: " + why);
    };
    cursor c(p->data.data(), p->size);
    const char type = static_cast<char>(p->data[5]);
    if (type == 'R') {
      close_all(p->fds);
      return bad("the running process refused: " + printable(c.rest()));
    }
    if (type == 'E') {
      std::size_t listeners = 0, fds = 0;
      if (!c.u32(listeners) || !c.u32(fds) || !c.done() || !p->fds.empty())
        return reject("bad end of list");
      if (listeners != out.size() || fds != total)
        return reject("end of list says " + std::to_string(listeners) + " listener(s) and " +
                      std::to_string(fds) + " socket(s), received " +
                      std::to_string(out.size()) + " and " + std::to_string(total));
      return out;
    }
    if (type != 'L') return reject("unexpected message type " + std::to_string(p->data[5]));
    std::size_t name_len = 0, count = 0;
    std::string name;
    if (!c.u16(name_len) || name_len > max_name || !c.bytes(name_len, name) || !c.u16(count) ||
        !c.done())
      return reject("bad listener entry");
    if (!valid_name(name)) return reject("bad listener name");
    if (count == 0 || count > max_fds_per_message || count != p->fds.size())
      return reject("listener " + name + ": " + std::to_string(count) + " socket(s) announced, " +
                    std::to_string(p->fds.size()) + " attached");
    for (int f : p->fds)
      if (!listening_tcp(f)) return reject("listener " + name + ": not a listening TCP socket");
    if (out.empty() || out.back().name != name) {
      if (std::any_of(out.begin(), out.end(), [&](const listener_fds& l) { return l.name == name; }))
        return reject("listener " + name + " sent twice");
      if (out.size() >= max_listeners) return reject("too many listeners");
      out.push_back({name, {}});
    }
    if (total + count > max_fds) return reject("too many sockets");
    out.back().fds.insert(out.back().fds.end(), p->fds.begin(), p->fds.end());
    total += count;
    p->fds.clear();
  }
}

bool send_control(int fd, char type, std::string_view text, std::string* error) {
  std::string m = header(type);
  m.append(text.substr(0, max_text));
  return send_packet(fd, m, nullptr, 0, error);
}

std::optional<control_message> receive_control(int fd, std::string* error) {
  auto p = std::make_unique<packet>();
  if (!receive_packet(fd, *p, error)) return std::nullopt;
  if (!p->fds.empty()) {
    close_all(p->fds);
    fail(error, "malformed hand-off message: unexpected descriptors");
    return std::nullopt;
  }
  const char type = static_cast<char>(p->data[5]);
  if (type != 'G' && type != 'A' && type != 'R') {
    fail(error, "malformed hand-off message: unexpected message type");
    return std::nullopt;
  }
  control_message m;
  m.type = type;
  m.text.assign(reinterpret_cast<const char*>(p->data.data()) + header_size,
                std::min(p->size - header_size, max_text));
  if (type != 'R' && !m.text.empty()) {
    fail(error, "malformed hand-off message: trailing bytes");
    return std::nullopt;
  }
  return m;
}

}  // namespace handoff

namespace {

std::optional<sockaddr_un> unix_address(const std::string& path, std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    if (error) *error = "upgrade socket path '" + path + "' is empty or too long";
    return std::nullopt;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Connects a SOCK_SEQPACKET socket to `path`; -1 with errno set on failure.
int connect_unix(const sockaddr_un& addr) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::optional<ucred> peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  return cred;
}

std::string local_text(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  core::address a;
  a.storage = ss;
  a.length = len;
  return a.numeric();
}

constexpr auto go_deadline = std::chrono::seconds(60);

}  // namespace

// ---- the running process's side -----------------------------------------------------------

struct handoff_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& io, std::string p, hooks hk)
      : io(io), acceptor(io), path(std::move(p)), h(std::move(hk)) {}

  asio::io_context& io;
  seqpacket_acceptor acceptor;
  std::string path;
  hooks h;
  dev_t dev = 0;
  ino_t ino = 0;
  bool busy = false;         // a successor holds our sockets and may say go
  bool handed_over = false;  // it did: the path belongs to it now
  bool closed = false;

  void accept() {
    acceptor.async_accept([self = shared_from_this()](boost::system::error_code ec,
                                                      seqpacket::socket s) {
      if (self->closed || ec == asio::error::operation_aborted) return;
      if (ec) {
        SLUICE_LOG(warn, "upgrade socket " << self->path << ": accept: " << ec.message());
        auto t = std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(100));
        t->async_wait([self, t](boost::system::error_code) {
          if (!self->closed) self->accept();
        });
        return;
      }
      self->serve(std::make_shared<seqpacket::socket>(std::move(s)));
      self->accept();
    });
  }

  void refuse(seqpacket::socket& s, const std::string& why) {
    std::string ignored;
    handoff::send_control(s.native_handle(), 'R', why, &ignored);
    boost::system::error_code ec;
    s.close(ec);
  }

  void serve(std::shared_ptr<seqpacket::socket> s) {
    const int fd = s->native_handle();
    set_timeouts(fd, std::chrono::seconds(2));
    auto cred = peer_credentials(fd);
    if (!cred || (cred->uid != ::geteuid() && cred->uid != 0)) {
      SLUICE_LOG(warn, "upgrade socket " << path << ": refused a peer running as uid "
                                         << (cred ? std::to_string(cred->uid) : "?"));
      return refuse(*s, "permission denied: not the same user");
    }
    const std::string who = "pid " + std::to_string(cred->pid);
    if (busy || handed_over) {
      SLUICE_LOG(warn, "upgrade: refused " << who << ": another upgrade is in progress");
      return refuse(*s, "another upgrade is in progress");
    }
    auto listeners = h.listeners ? h.listeners() : std::vector<listener_fds>{};
    if (listeners.empty()) {
      SLUICE_LOG(warn, "upgrade: refused " << who << ": this process is draining");
      return refuse(*s, "the running process is draining");
    }
    std::string err;
    if (!handoff::send_listeners(fd, listeners, &err)) {
      SLUICE_LOG(warn, "upgrade: sending the listening sockets to " << who << " failed: " << err);
      return;
    }
    std::size_t count = 0;
    for (const auto& l : listeners) count += l.fds.size();
    SLUICE_LOG(info, "upgrade: handed " << count << " listening socket(s) of " << listeners.size()
                                        << " listener(s) to " << who
                                        << "; serving until it takes over");
    busy = true;
    auto timer = std::make_shared<asio::steady_timer>(io, go_deadline);
    timer->async_wait([s](boost::system::error_code ec) {
      if (!ec) s->cancel(ec);
    });
    s->async_wait(seqpacket::socket::wait_read,
                  [self = shared_from_this(), s, timer, who](boost::system::error_code ec) {
                    timer->cancel();
                    self->on_reply(*s, ec, who);
                  });
  }

  void on_reply(seqpacket::socket& s, boost::system::error_code ec, const std::string& who) {
    busy = false;
    if (closed) return;
    if (ec) {
      SLUICE_LOG(warn, "upgrade: " << who << " did not take over within "
                                   << go_deadline.count() << "s; still serving");
      s.close(ec);
      return;
    }
    std::string err;
    auto m = handoff::receive_control(s.native_handle(), &err);
    if (!m || m->type != 'G') {
      SLUICE_LOG(warn, "upgrade: " << who << " gave up ("
                                   << (m ? "unexpected message" : err) << "); still serving");
      s.close(ec);
      return;
    }
    SLUICE_LOG(info, "upgrade: " << who << " took over the listening sockets; draining");
    handed_over = true;
    // Stop listening on the path but leave it: the successor replaces it with its own.
    acceptor.close(ec);
    if (h.on_go) h.on_go();
    if (!handoff::send_control(s.native_handle(), 'A', {}, &err))
      SLUICE_LOG(warn, "upgrade: acknowledging to " << who << ": " << err);
    s.close(ec);
  }

  void close() {
    if (closed) return;
    closed = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    if (handed_over) return;
    // Remove the path only while it is still the socket this process bound.
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
      ::unlink(path.c_str());
  }
};

std::unique_ptr<handoff_server> handoff_server::start(asio::io_context& control,
                                                      const std::string& path, hooks h,
                                                      bool replace, std::string* error) {
  auto addr = unix_address(path, error);
  if (!addr) return nullptr;
  auto failed = [&](std::string why) -> std::unique_ptr<handoff_server> {
    if (error) *error = "upgrade socket " + path + ": " + why;
    return nullptr;
  };
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return failed("exists and is not a socket");
    if (!replace) {
      const int probe = connect_unix(*addr);
      if (probe >= 0) {
        ::close(probe);
        return failed("a running process accepts there (start this one with --upgrade to "
                      "take over from it)");
      }
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return failed(handoff::sys_error("cannot remove the old socket", errno));
  } else if (errno != ENOENT) {
    return failed(handoff::sys_error("stat", errno));
  }

  auto i = std::make_shared<impl>(control, path, std::move(h));
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return failed(handoff::sys_error("socket", errno));
  // Only this user may connect: whoever gets the listening sockets gets the traffic. Workers
  // do not run yet, so nothing else creates files while the umask is narrowed.
  const mode_t old_mask = ::umask(0177);
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  const int bind_errno = errno;
  ::umask(old_mask);
  if (rc != 0 || ::listen(fd, 4) != 0) {
    const int err = rc != 0 ? bind_errno : errno;
    ::close(fd);
    return failed(handoff::sys_error(rc != 0 ? "bind" : "listen", err));
  }
  if (::lstat(path.c_str(), &st) == 0) {
    i->dev = st.st_dev;
    i->ino = st.st_ino;
  }
  boost::system::error_code ec;
  i->acceptor.assign(seqpacket(AF_UNIX, 0), fd, ec);
  if (ec) {
    ::close(fd);
    ::unlink(path.c_str());
    return failed(ec.message());
  }
  i->accept();
  return std::unique_ptr<handoff_server>(new handoff_server(std::move(i)));
}

handoff_server::~handoff_server() { close(); }

void handoff_server::close() {
  if (impl_) impl_->close();
}

// ---- the successor's side -----------------------------------------------------------------

std::unique_ptr<handoff_client> handoff_client::connect(const std::string& path,
                                                        std::chrono::milliseconds timeout,
                                                        std::string* error) {
  auto addr = unix_address(path, error);
  if (!addr) return nullptr;
  const int fd = connect_unix(*addr);
  if (fd < 0) {
    const int err = errno;
    if (error) {
      if (err == ENOENT)
        *error = "upgrade socket " + path +
                 " does not exist (is sluice running with this upgrade_socket?)";
      else if (err == ECONNREFUSED)
        *error = "nothing accepts on upgrade socket " + path + " (stale socket?)";
      else
        *error = "upgrade socket " + path + ": " + handoff::sys_error("connect", err);
    }
    return nullptr;
  }
  std::unique_ptr<handoff_client> c(new handoff_client);
  c->fd_ = fd;
  c->timeout_ = timeout;
  set_timeouts(fd, timeout);
  if (auto cred = peer_credentials(fd)) c->peer_pid_ = cred->pid;
  std::string err;
  auto ls = handoff::receive_listeners(fd, &err);
  if (!ls) {
    if (error) *error = "receiving the listening sockets from " + path + ": " + err;
    return nullptr;
  }
  c->listeners_ = std::move(*ls);
  std::size_t count = 0;
  for (const auto& l : c->listeners_) count += l.fds.size();
  SLUICE_LOG(info, "upgrade: received " << count << " listening socket(s) of "
                                        << c->listeners_.size() << " listener(s) from pid "
                                        << c->peer_pid_);
  return c;
}

handoff_client::~handoff_client() {
  for (const auto& l : listeners_) {
    if (l.fds.empty()) continue;
    SLUICE_LOG(info, "upgrade: listener " << l.name
                                          << " of the running process is not taken over here");
    for (int fd : l.fds) ::close(fd);
  }
  if (fd_ >= 0) ::close(fd_);
}

std::vector<int> handoff_client::take(const std::string& name, const core::address& address) {
  auto it = std::find_if(listeners_.begin(), listeners_.end(),
                         [&](const listener_fds& l) { return l.name == name; });
  if (it == listeners_.end() || it->fds.empty()) {
    SLUICE_LOG(info, "upgrade: listener " << name << " is new; binding " << address.text);
    return {};
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  bool same = ::getsockname(it->fds.front(), reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
              ss.ss_family == address.storage.ss_family;
  if (same && ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    const auto& b = reinterpret_cast<const sockaddr_in&>(address.storage);
    same = a.sin_addr.s_addr == b.sin_addr.s_addr && (b.sin_port == 0 || a.sin_port == b.sin_port);
  } else if (same && ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    const auto& b = reinterpret_cast<const sockaddr_in6&>(address.storage);
    same = std::memcmp(&a.sin6_addr, &b.sin6_addr, sizeof a.sin6_addr) == 0 &&
           (b.sin6_port == 0 || a.sin6_port == b.sin6_port);
  }
  if (!same) {
    SLUICE_LOG(info, "upgrade: listener " << name << " moved from " << local_text(it->fds.front())
                                          << " to " << address.text << "; binding anew");
    return {};
  }
  SLUICE_LOG(info, "upgrade: listener " << name << ": took over " << it->fds.size()
                                        << " socket(s) on " << local_text(it->fds.front()));
  return std::exchange(it->fds, {});
}

bool handoff_client::go(std::string* error) {
  std::string err;
  if (!handoff::send_control(fd_, 'G', {}, &err)) {
    if (error) *error = "telling the running process (pid " + std::to_string(peer_pid_) +
                        ") to stop accepting: " + err;
    return false;
  }
  auto m = handoff::receive_control(fd_, &err);
  if (!m || m->type != 'A')
    SLUICE_LOG(warn, "upgrade: no acknowledgement from pid "
                         << peer_pid_ << " (" << (m ? "unexpected message" : err)
                         << "); serving anyway, it may be draining");
  else
    SLUICE_LOG(info, "upgrade: pid " << peer_pid_ << " stopped accepting and is draining");
  return true;
}

}  // namespace sluice::net
