#include "net/sd_notify.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace sluice::net {

bool sd_notify(std::string_view state, std::string* error) noexcept {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return true;
  auto fail = [&](const char* what, int err) {
    if (error) {
      try {
        *error = std::string("sd_notify: ") + what + ": " + std::strerror(err);
      } catch (...) {
      }
    }
    return false;
  };
  const std::size_t len = std::strlen(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // An abstract socket ('@name') keeps no NUL terminator; a path needs room for one.
  const bool abstract = path[0] == '@';
  if (len > sizeof(addr.sun_path) - (abstract ? 0 : 1) || (path[0] != '/' && !abstract))
    return fail("NOTIFY_SOCKET is not an absolute path or @abstract name", EINVAL);
  std::memcpy(addr.sun_path, path, len);
  if (abstract) addr.sun_path[0] = '\0';
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);

  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket", errno);
  ssize_t n;
  do {
    n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&addr), addr_len);
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n < 0) return fail("sendto", err);
  if (static_cast<std::size_t>(n) != state.size()) return fail("sendto", EMSGSIZE);
  return true;
}

}  // namespace sluice::net
