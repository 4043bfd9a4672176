#include "net/handoff.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

namespace net = sluice::net;
namespace handoff = sluice::net::handoff;
using namespace std::chrono_literals;

namespace {

// Runs f on the thread running `io` (the control thread in sluice) and waits for it.
template <class F>
void on_io(boost::asio::io_context& io, F f) {
  std::promise<void> done;
  boost::asio::post(io, [&] {
    f();
    done.set_value();
  });
  done.get_future().wait();
}

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A listening TCP socket on 127.0.0.1 (port 0: the kernel picks).
int listening_socket(std::uint16_t port = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  return ntohs(a.sin_port);
}

// A connection to 127.0.0.1:port, accepted on `listener`; true when the bytes get through.
bool connects_through(std::uint16_t port, int listener) {
  const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::send(c, "x", 1, MSG_NOSIGNAL) == 1;
  const int s = ok ? ::accept(listener, nullptr, nullptr) : -1;
  char ch = 0;
  ok = s >= 0 && ::recv(s, &ch, 1, 0) == 1 && ch == 'x';
  if (s >= 0) ::close(s);
  ::close(c);
  return ok;
}

struct pair_fixture {
  int a = -1, b = -1;  // a: the running process's end, b: the successor's
  pair_fixture() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    a = sv[0];
    b = sv[1];
    timeval tv{5, 0};
    ::setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~pair_fixture() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
};

void close_all(const std::vector<net::listener_fds>& ls) {
  for (const auto& l : ls)
    for (int fd : l.fds) ::close(fd);
}

// A raw packet from the running process's end, with optional descriptors.
void send_raw(int fd, const std::string& data, const std::vector<int>& fds = {}) {
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  REQUIRE(::sendmsg(fd, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

std::string header(char type, unsigned char version = 1) {
  return std::string("SLHO") + static_cast<char>(version) + type;
}

std::string u16(std::size_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

std::string u32(std::size_t v) { return u16(v >> 16) + u16(v & 0xffff); }

std::string listener_msg(const std::string& name, std::size_t n) {
  return header('L') + u16(name.size()) + name + u16(n);
}

// What the successor makes of the packets already sent; the error text when it fails.
std::string receive_error(int fd) {
  std::string err;
  auto r = handoff::receive_listeners(fd, &err);
  if (r) {
    close_all(*r);
    return "<accepted>";
  }
  return err;
}

}  // namespace

TEST_CASE("listening sockets pass with their names over a socketpair", "[handoff]") {
  const std::size_t before = open_fds();
  {
    pair_fixture p;
    const int web1 = listening_socket();
    const int web2 = listening_socket(port_of(web1));
    const int admin = listening_socket();
    std::string err;
    REQUIRE(handoff::send_listeners(p.a, {{"web", {web1, web2}}, {"admin", {admin}}}, &err));
    auto got = handoff::receive_listeners(p.b, &err);
    REQUIRE(got);
    REQUIRE(got->size() == 2);
    CHECK((*got)[0].name == "web");
    CHECK((*got)[1].name == "admin");
    REQUIRE((*got)[0].fds.size() == 2);
    REQUIRE((*got)[1].fds.size() == 1);
    // New descriptors for the same sockets: same ports, and they accept.
    CHECK((*got)[0].fds[0] != web1);
    CHECK(port_of((*got)[0].fds[0]) == port_of(web1));
    CHECK(port_of((*got)[0].fds[1]) == port_of(web1));
    CHECK(port_of((*got)[1].fds[0]) == port_of(admin));
    CHECK(::fcntl((*got)[0].fds[0], F_GETFD) & FD_CLOEXEC);
    // The original closes; the received copy keeps the socket (and its backlog) alive.
    const auto admin_port = port_of(admin);
    ::close(admin);
    CHECK(connects_through(admin_port, (*got)[1].fds[0]));
    close_all(*got);
    ::close(web1);
    ::close(web2);
  }
  CHECK(open_fds() == before);
}

TEST_CASE("a listener with more sockets than fit in one message arrives whole", "[handoff]") {
  pair_fixture p;
  const int l = listening_socket();
  std::vector<int> many;
  for (int i = 0; i < 150; ++i) many.push_back(::dup(l));
  std::string err;
  // The socketpair's buffer holds the few messages this takes.
  REQUIRE(handoff::send_listeners(p.a, {{"big", many}, {"small", {l}}}, &err));
  auto got = handoff::receive_listeners(p.b, &err);
  REQUIRE(got);
  REQUIRE(got->size() == 2);
  CHECK((*got)[0].name == "big");
  CHECK((*got)[0].fds.size() == 150);
  CHECK((*got)[1].fds.size() == 1);
  close_all(*got);
  for (int fd : many) ::close(fd);
  ::close(l);
}

TEST_CASE("malformed hand-off messages are rejected and leak nothing", "[handoff]") {
  const std::size_t before = open_fds();
  const int l = listening_socket();
  {
    pair_fixture p;
    send_raw(p.a, "GARBAGE!");
    CHECK(receive_error(p.b).find("not a sluice upgrade peer") != std::string::npos);
  }
  {
    pair_fixture p;
    send_raw(p.a, header('E', 7) + u32(0) + u32(0));
    CHECK(receive_error(p.b).find("version 7") != std::string::npos);
  }
  {
    pair_fixture p;  // announces 2 sockets, carries 1
    send_raw(p.a, listener_msg("web", 2), {l});
    CHECK(receive_error(p.b).find("2 socket(s) announced, 1 attached") != std::string::npos);
  }
  {
    pair_fixture p;  // zero sockets
    send_raw(p.a, listener_msg("web", 0));
    CHECK(receive_error(p.b).find("announced") != std::string::npos);
  }
  {
    pair_fixture p;  // truncated entry
    send_raw(p.a, header('L') + u16(10) + "web", {l});
    CHECK(receive_error(p.b).find("bad listener entry") != std::string::npos);
  }
  {
    pair_fixture p;  // trailing bytes
    send_raw(p.a, listener_msg("web", 1) + "zz", {l});
    CHECK(receive_error(p.b).find("bad listener entry") != std::string::npos);
  }
  {
    pair_fixture p;  // bad name
    send_raw(p.a, listener_msg("we b", 1), {l});
    CHECK(receive_error(p.b).find("bad listener name") != std::string::npos);
  }
  {
    pair_fixture p;  // not a listening TCP socket
    const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_raw(p.a, listener_msg("web", 1), {udp});
    ::close(udp);
    CHECK(receive_error(p.b).find("not a listening TCP socket") != std::string::npos);
  }
  {
    pair_fixture p;  // a name that comes back after another
    send_raw(p.a, listener_msg("a", 1), {l});
    send_raw(p.a, listener_msg("b", 1), {l});
    send_raw(p.a, listener_msg("a", 1), {l});
    CHECK(receive_error(p.b).find("listener a sent twice") != std::string::npos);
  }
  {
    pair_fixture p;  // totals that do not match
    send_raw(p.a, listener_msg("a", 1), {l});
    send_raw(p.a, header('E') + u32(1) + u32(5));
    CHECK(receive_error(p.b).find("end of list says 1 listener(s) and 5 socket(s)") !=
          std::string::npos);
  }
  {
    pair_fixture p;  // unknown type
    send_raw(p.a, header('Z'));
    CHECK(receive_error(p.b).find("unexpected message type") != std::string::npos);
  }
  {
    pair_fixture p;  // too long for the receive buffer
    send_raw(p.a, header('L') + std::string(handoff::max_message + 100, 'x'), {l});
    CHECK(receive_error(p.b).find("too long") != std::string::npos);
  }
  {
    pair_fixture p;  // the peer goes away mid-list
    send_raw(p.a, listener_msg("a", 1), {l});
    ::close(p.a);
    p.a = -1;
    CHECK(receive_error(p.b).find("closed the upgrade connection") != std::string::npos);
  }
  {
    pair_fixture p;  // silence: bounded by SO_RCVTIMEO
    timeval tv{0, 100000};
    ::setsockopt(p.b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(receive_error(p.b).find("timed out") != std::string::npos);
  }
  {
    pair_fixture p;  // a refusal, with control characters kept out of the log
    send_raw(p.a, header('R') + "draining\n\x1b[31m");
    CHECK(receive_error(p.b) == "the running process refused: draining??[31m");
  }
  ::close(l);
  CHECK(open_fds() == before);
}

TEST_CASE("control messages", "[handoff]") {
  pair_fixture p;
  std::string err;
  REQUIRE(handoff::send_control(p.b, 'G', {}, &err));
  auto m = handoff::receive_control(p.a, &err);
  REQUIRE(m);
  CHECK(m->type == 'G');
  REQUIRE(handoff::send_control(p.a, 'R', "busy", &err));
  m = handoff::receive_control(p.b, &err);
  REQUIRE(m);
  CHECK(m->type == 'R');
  CHECK(m->text == "busy");
  // Descriptors where none belong, or a listener entry instead of a control message.
  const std::size_t before = open_fds();
  const int l = listening_socket();
  send_raw(p.a, header('A'), {l});
  CHECK_FALSE(handoff::receive_control(p.b, &err));
  CHECK(err.find("unexpected descriptors") != std::string::npos);
  send_raw(p.a, header('G') + "x");
  CHECK_FALSE(handoff::receive_control(p.b, &err));
  ::close(l);
  CHECK(open_fds() == before);
}

TEST_CASE("server and client hand over, then the successor replaces the path", "[handoff]") {
  char tmpl[] = "/tmp/sluice-handoff-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const std::string path = dir + "/upgrade.sock";

  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });

  const int web = listening_socket();
  const int admin = listening_socket();
  std::atomic<int> gone{0};
  net::handoff_server::hooks hooks{
      [&] { return std::vector<net::listener_fds>{{"web", {web}}, {"admin", {admin}}}; },
      [&] { ++gone; }};
  std::string err;
  std::unique_ptr<net::handoff_server> server;
  on_io(io, [&] { server = net::handoff_server::start(io, path, hooks, false, &err); });
  REQUIRE(server);

  SECTION("a second process may not listen on a path in use") {
    std::unique_ptr<net::handoff_server> second;
    on_io(io, [&] { second = net::handoff_server::start(io, path, hooks, false, &err); });
    CHECK_FALSE(second);
    CHECK(err.find("a running process accepts there") != std::string::npos);
  }

  SECTION("the successor takes what matches, says go, and the old one acknowledges") {
    auto client = net::handoff_client::connect(path, 5s, &err);
    REQUIRE(client);
    CHECK(client->peer_pid() == ::getpid());
    CHECK(client->listener_count() == 2);
    // Wrong address: not taken. Port 0 in the configuration matches the inherited port.
    auto elsewhere = sluice::core::resolve("127.0.0.2:0", nullptr, true);
    CHECK(client->take("web", *elsewhere).empty());
    auto any_port = sluice::core::resolve("127.0.0.1:0", nullptr, true);
    auto fds = client->take("web", *any_port);
    REQUIRE(fds.size() == 1);
    CHECK(port_of(fds[0]) == port_of(web));
    CHECK(client->take("web", *any_port).empty());  // taken once
    CHECK(client->take("nope", *any_port).empty());
    // A second successor meanwhile is refused.
    auto other = net::handoff_client::connect(path, 5s, &err);
    CHECK_FALSE(other);
    CHECK(err.find("another upgrade is in progress") != std::string::npos);
    REQUIRE(client->go(&err));
    CHECK(gone == 1);
    // The old side stopped listening but left the path for the successor.
    CHECK(std::filesystem::exists(path));
    CHECK_FALSE(net::handoff_client::connect(path, 1s, &err));
    CHECK(err.find("nothing accepts") != std::string::npos);
    on_io(io, [&] { server.reset(); });
    CHECK(std::filesystem::exists(path));
    std::unique_ptr<net::handoff_server> next;
    on_io(io, [&] { next = net::handoff_server::start(io, path, hooks, true, &err); });
    REQUIRE(next);
    auto again = net::handoff_client::connect(path, 5s, &err);
    CHECK(again);
    for (int fd : fds) ::close(fd);
    again.reset();
    on_io(io, [&] { next.reset(); });
    CHECK_FALSE(std::filesystem::exists(path));  // removed on a plain close
  }

  SECTION("a successor that gives up changes nothing") {
    {
      auto client = net::handoff_client::connect(path, 5s, &err);
      REQUIRE(client);
    }
    // The old side notices the disconnect and serves the next one.
    std::unique_ptr<net::handoff_client> later;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!later && std::chrono::steady_clock::now() < deadline) {
      later = net::handoff_client::connect(path, 5s, &err);
      if (!later) std::this_thread::sleep_for(20ms);
    }
    REQUIRE(later);
    CHECK(gone == 0);
  }

  SECTION("no socket at the path, or not a socket") {
    CHECK_FALSE(net::handoff_client::connect(dir + "/missing.sock", 1s, &err));
    CHECK(err.find("does not exist") != std::string::npos);
    const std::string file = dir + "/plain";
    std::ofstream(file) << "x";
    std::unique_ptr<net::handoff_server> bad;
    on_io(io, [&] { bad = net::handoff_server::start(io, file, hooks, true, &err); });
    CHECK_FALSE(bad);
    CHECK(err.find("is not a socket") != std::string::npos);
  }

  on_io(io, [&] { server.reset(); });
  guard.reset();
  io.stop();
  runner.join();
  ::close(web);
  ::close(admin);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a stale socket path is replaced at start", "[handoff]") {
  char tmpl[] = "/tmp/sluice-handoff-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const std::string path = dir + "/upgrade.sock";
  {
    // Bound, then closed without unlinking: what a killed process leaves behind.
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    ::close(fd);
  }
  boost::asio::io_context io;
  std::string err;
  auto server = net::handoff_server::start(io, path, {}, false, &err);
  CHECK(server);
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  server.reset();
  std::filesystem::remove_all(dir);
}
