#include "sluice/log/access_log.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <unistd.h>

namespace sluice::log {
namespace {

constexpr std::size_t flush_threshold = 32 * 1024;

void write_all(int fd, const std::string& data) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // a full disk must not stop the proxy
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
}

// nginx's $time_local: 25/Nov/2026:13:11:19 +0000 (we log in UTC).
void append_time_local(std::string& out, std::chrono::system_clock::time_point t) {
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday,
                        months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  out.append(buf, static_cast<std::size_t>(n));
}

void append_iso_time(std::string& out, std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::system_clock::to_time_t(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(ms));
  out.append(buf, static_cast<std::size_t>(n));
}

// Escapes like nginx: '"', '\\' and bytes outside printable ASCII become \xHH.
void append_escaped(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c < 0x20 || c > 0x7e) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
}

void append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c > 0x7e) {  // keep the line ASCII whatever the request carried
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void append_or_dash(std::string& out, std::string_view s) {
  if (s.empty()) out += '-';
  else append_escaped(out, s);
}

void append_seconds(std::string& out, double s) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", s);
  out.append(buf, static_cast<std::size_t>(n));
}

std::string_view version_text(unsigned v) {
  switch (v) {
    case 10: return "HTTP/1.0";
    case 20: return "HTTP/2.0";
    default: return "HTTP/1.1";
  }
}

}  // namespace

void format_combined(std::string& out, const access_entry& e) {
  append_or_dash(out, e.client_ip);
  out += " - - [";
  append_time_local(out, e.time);
  out += "] \"";
  append_escaped(out, e.method);
  out += ' ';
  append_escaped(out, e.target);
  out += ' ';
  out += version_text(e.version);
  out += "\" ";
  out += std::to_string(e.status);
  out += ' ';
  out += std::to_string(e.body_bytes_sent);
  out += " \"";
  append_or_dash(out, e.referer);
  out += "\" \"";
  append_or_dash(out, e.user_agent);
  out += "\" \"";
  append_or_dash(out, e.upstream_addr);
  out += "\" ";
  if (e.upstream_seconds < 0) out += '-';
  else append_seconds(out, e.upstream_seconds);
  out += ' ';
  append_seconds(out, e.request_seconds);
}

void format_json(std::string& out, const access_entry& e) {
  out += "{\"time\":\"";
  append_iso_time(out, e.time);
  out += "\",\"client\":";
  append_json_string(out, e.client_ip);
  out += ",\"method\":";
  append_json_string(out, e.method);
  out += ",\"target\":";
  append_json_string(out, e.target);
  out += ",\"protocol\":\"";
  out += version_text(e.version);
  out += "\",\"status\":";
  out += std::to_string(e.status);
  if (e.grpc_status >= 0) {
    out += ",\"grpc_status\":";
    out += std::to_string(e.grpc_status);
  }
  out += ",\"bytes_sent\":";
  out += std::to_string(e.body_bytes_sent);
  out += ",\"referer\":";
  append_json_string(out, e.referer);
  out += ",\"user_agent\":";
  append_json_string(out, e.user_agent);
  out += ",\"upstream\":";
  if (e.upstream_addr.empty()) out += "null";
  else append_json_string(out, e.upstream_addr);
  out += ",\"upstream_time\":";
  if (e.upstream_seconds < 0) out += "null";
  else append_seconds(out, e.upstream_seconds);
  out += ",\"request_time\":";
  append_seconds(out, e.request_seconds);
  out += '}';
}

std::shared_ptr<access_log> access_log::open(const std::string& path, format f, std::string* error) {
  std::shared_ptr<access_log> log(new access_log());
  log->path_ = path;
  log->format_ = f;
  if (path == "off") return log;
  if (path == "stdout") {
    log->fd_ = STDOUT_FILENO;
  } else if (path == "stderr") {
    log->fd_ = STDERR_FILENO;
  } else {
    log->fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log->fd_ < 0) {
      if (error) *error = "cannot open access log '" + path + "': " + std::strerror(errno);
      return nullptr;
    }
    log->owns_fd_ = true;
  }
  return log;
}

access_log::~access_log() {
  if (owns_fd_) ::close(fd_);
}

void access_log::reopen() {
  if (!owns_fd_) return;
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  // dup2 swaps the file under writers without a window where fd_ is invalid.
  ::dup2(fd, fd_);
  ::close(fd);
}

void access_log::writer::append(const access_entry& e) {
  if (!enabled()) return;
  if (sink_->format_ == format::json) format_json(buffer_, e);
  else format_combined(buffer_, e);
  buffer_ += '\n';
  if (buffer_.size() >= flush_threshold) flush();
}

void access_log::writer::flush() {
  if (buffer_.empty() || !enabled()) return;
  write_all(sink_->fd_, buffer_);
  buffer_.clear();
}

}  // namespace sluice::log
