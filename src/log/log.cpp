#include "sluice/log/log.hpp"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

#include <fcntl.h>
#include <unistd.h>

namespace sluice::log {
namespace {

struct sink {
  std::mutex mutex;  // guards fd/path changes; writes are single write(2) calls
  std::string path = "stderr";
  int fd = STDERR_FILENO;
  bool owns = false;
};

sink& the_sink() {
  static sink s;
  return s;
}

std::atomic<int> min_level{static_cast<int>(level::info)};

const char* name_of(level l) {
  switch (l) {
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
  }
  return "?";
}

int open_target(const std::string& target, std::string* error) {
  if (target == "stderr") return STDERR_FILENO;
  if (target == "stdout") return STDOUT_FILENO;
  int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 && error) *error = "cannot open log file '" + target + "': " + std::strerror(errno);
  return fd;
}

}  // namespace

bool parse_level(std::string_view text, level& out) noexcept {
  if (text == "debug") out = level::debug;
  else if (text == "info") out = level::info;
  else if (text == "warn") out = level::warn;
  else if (text == "error") out = level::error;
  else return false;
  return true;
}

bool open(const std::string& target, level l, std::string* error) {
  int fd = open_target(target, error);
  if (fd < 0) return false;
  auto& s = the_sink();
  std::lock_guard lock(s.mutex);
  if (s.owns) ::close(s.fd);
  s.fd = fd;
  s.owns = fd > STDERR_FILENO;
  s.path = target;
  min_level.store(static_cast<int>(l), std::memory_order_relaxed);
  return true;
}

void reopen() {
  auto& s = the_sink();
  std::lock_guard lock(s.mutex);
  if (!s.owns) return;
  int fd = open_target(s.path, nullptr);
  if (fd < 0) return;  // keep writing to the old file rather than nowhere
  ::close(s.fd);
  s.fd = fd;
}

bool enabled(level l) noexcept {
  return static_cast<int>(l) >= min_level.load(std::memory_order_relaxed);
}

void write(level l, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char head[64];
  int n = std::snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] ",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                        tm.tm_sec, static_cast<int>(ms), name_of(l));
  std::string line;
  line.reserve(static_cast<std::size_t>(n) + message.size() + 1);
  line.append(head, static_cast<std::size_t>(n));
  line.append(message);
  line.push_back('\n');
  auto& s = the_sink();
  std::lock_guard lock(s.mutex);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t w = ::write(s.fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
}

}  // namespace sluice::log
