#include "net/sd_notify.hpp"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace {

// A bound AF_UNIX datagram socket standing in for systemd's notification socket.
class notify_socket {
 public:
  explicit notify_socket(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
      name_ = "@sluice-sd-notify-test-" + std::to_string(::getpid());
      std::memcpy(addr.sun_path + 1, name_.data() + 1, name_.size() - 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    } else {
      char tmpl[] = "/tmp/sluice-sd-notify-XXXXXX";
      REQUIRE(::mkdtemp(tmpl) != nullptr);
      dir_ = tmpl;
      name_ = dir_ + "/notify";
      std::memcpy(addr.sun_path, name_.c_str(), name_.size() + 1);
      len = sizeof(addr);
    }
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0);
    ::setenv("NOTIFY_SOCKET", name_.c_str(), 1);
  }
  ~notify_socket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // The datagram already queued (delivery on a local datagram socket happens within sendto).
  std::string receive() {
    char buf[4096];
    const auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) return "<nothing>";
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  int fd_ = -1;
  std::string dir_, name_;
};

}  // namespace

TEST_CASE("sd_notify without NOTIFY_SOCKET does nothing and succeeds", "[sd_notify]") {
  ::unsetenv("NOTIFY_SOCKET");
  std::string err;
  CHECK(sluice::net::sd_notify("READY=1", &err));
  CHECK(err.empty());
  ::setenv("NOTIFY_SOCKET", "", 1);
  CHECK(sluice::net::sd_notify("READY=1", &err));
  ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("sd_notify sends one datagram to a socket path", "[sd_notify]") {
  notify_socket sock(false);
  CHECK(sluice::net::sd_notify("READY=1\nSTATUS=listening on 2 listeners"));
  CHECK(sock.receive() == "READY=1\nSTATUS=listening on 2 listeners");
  CHECK(sluice::net::sd_notify("STOPPING=1"));
  CHECK(sock.receive() == "STOPPING=1");
  CHECK(sock.receive() == "<nothing>");
}

TEST_CASE("sd_notify sends to an abstract socket written with @", "[sd_notify]") {
  notify_socket sock(true);
  CHECK(sluice::net::sd_notify("RELOADING=1"));
  CHECK(sock.receive() == "RELOADING=1");
}

TEST_CASE("sd_notify reports a socket that is not there", "[sd_notify]") {
  ::setenv("NOTIFY_SOCKET", "/nonexistent-sluice-dir/notify", 1);
  std::string err;
  CHECK_FALSE(sluice::net::sd_notify("READY=1", &err));
  CHECK(err.find("sendto") != std::string::npos);
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  err.clear();
  CHECK_FALSE(sluice::net::sd_notify("READY=1", &err));
  CHECK_FALSE(err.empty());
  ::setenv("NOTIFY_SOCKET", ("/" + std::string(200, 'x')).c_str(), 1);
  CHECK_FALSE(sluice::net::sd_notify("READY=1"));  // longer than sun_path
  ::unsetenv("NOTIFY_SOCKET");
}
