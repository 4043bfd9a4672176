// The access log: one line per request, nginx "combined" (plus upstream fields) or JSON lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sluice::log {

/// Everything one access log line can say. Views must stay valid during append().
struct access_entry {
  std::string_view client_ip;
  std::chrono::system_clock::time_point time;  ///< when the request started
  std::string_view method;
  std::string_view target;
  unsigned version = 11;  ///< 10, 11, 20
  unsigned status = 0;
  int grpc_status = -1;  ///< gRPC calls: the grpc-status sent (JSON format only); < 0: none
  std::uint64_t body_bytes_sent = 0;
  std::string_view referer;
  std::string_view user_agent;
  std::string_view upstream_addr;  ///< empty when no upstream was used
  double upstream_seconds = -1;    ///< < 0 when no upstream was used
  double request_seconds = 0;
};

/// Shared sink (one file descriptor) with a buffer per writer. Each worker owns one
/// `access_log::writer`; lines are batched and written with one write(2) per flush, which
/// O_APPEND keeps whole.
class access_log {
 public:
  enum class format { combined, json };

  /// path: file, "stdout", "stderr" or "off". Returns nullptr and sets *error on failure.
  static std::shared_ptr<access_log> open(const std::string& path, format f,
                                          std::string* error = nullptr);

  ~access_log();
  bool enabled() const noexcept { return fd_ >= 0; }
  format fmt() const noexcept { return format_; }
  void reopen();

  class writer {
   public:
    explicit writer(std::shared_ptr<access_log> sink) : sink_(std::move(sink)) {}
    ~writer() { flush(); }
    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;
    bool enabled() const noexcept { return sink_ && sink_->enabled(); }
    /// Formats one line into the buffer; flushes when the buffer passes 32 KiB.
    void append(const access_entry& e);
    /// Writes out what is buffered (call on a timer, ~1 s, and on shutdown).
    void flush();

   private:
    std::shared_ptr<access_log> sink_;
    std::string buffer_;
  };

 private:
  access_log() = default;
  std::string path_;
  int fd_ = -1;
  bool owns_fd_ = false;
  format format_ = format::combined;
  friend class writer;
};

/// Formats one entry (no trailing newline) in nginx combined format followed by
/// ` "upstream_addr" upstream_time request_time` ("-" when there was no upstream).
void format_combined(std::string& out, const access_entry& e);
void format_json(std::string& out, const access_entry& e);

}  // namespace sluice::log
