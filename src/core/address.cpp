#include "sluice/core/address.hpp"

#include <charconv>
#include <cstring>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

namespace sluice::core {

std::uint16_t address::port() const noexcept {
  if (storage.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in&>(storage).sin_port);
  if (storage.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6&>(storage).sin6_port);
  return 0;
}

std::string address::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(storage).sin_addr, buf, sizeof buf);
  else if (storage.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(storage).sin6_addr, buf,
              sizeof buf);
  return buf;
}

std::string address::numeric() const {
  std::string h = host();
  std::string out = storage.ss_family == AF_INET6 ? "[" + h + "]" : h;
  out += ':';
  out += std::to_string(port());
  return out;
}

std::optional<host_port> split_host_port(std::string_view text, bool allow_zero_port) {
  host_port hp;
  std::string_view port_text;
  if (text.empty()) return std::nullopt;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    hp.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    if (text.substr(0, colon).find(':') != std::string_view::npos) return std::nullopt;  // bare v6
    hp.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (hp.host.empty() || port_text.empty() || port_text.size() > 5) return std::nullopt;
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size()) return std::nullopt;
  if (value > 65535 || (value == 0 && !allow_zero_port)) return std::nullopt;
  hp.port = static_cast<std::uint16_t>(value);
  return hp;
}

std::optional<address> resolve(std::string_view text, std::string* error, bool allow_zero_port) {
  auto hp = split_host_port(text, allow_zero_port);
  if (!hp) {
    if (error) *error = "expected host:port (port 1-65535), got '" + std::string(text) + "'";
    return std::nullopt;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp->port);
  // Numeric first: never touch the resolver for a literal address.
  hints.ai_flags |= AI_NUMERICHOST;
  int rc = getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    hints.ai_flags &= ~AI_NUMERICHOST;
    rc = getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &res);
  }
  if (rc != 0 || !res) {
    if (error) *error = "cannot resolve '" + hp->host + "': " + gai_strerror(rc);
    return std::nullopt;
  }
  address a;
  a.text = std::string(text);
  std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
  a.length = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  return a;
}

}  // namespace sluice::core
