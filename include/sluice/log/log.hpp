// The error log: leveled, thread-safe lines to stderr, stdout or a file.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace sluice::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3 };

/// Parses "debug" | "info" | "warn" | "error".
bool parse_level(std::string_view text, level& out) noexcept;

/// Directs the error log to "stderr", "stdout" or a file path (appended). Returns false and
/// fills *error if the file cannot be opened; the previous target stays.
bool open(const std::string& target, level min_level, std::string* error = nullptr);

/// Reopens the current file target (logrotate). No-op for stderr/stdout.
void reopen();

bool enabled(level l) noexcept;

/// Writes one line "2026-11-25T13:11:19.123Z [info] message". Thread-safe, one write(2) per line.
void write(level l, std::string_view message);

}  // namespace sluice::log

/// Usage: SLUICE_LOG(info, "listener " << name << " bound " << addr);
#define SLUICE_LOG(lvl, expr)                                             \
  do {                                                                    \
    if (::sluice::log::enabled(::sluice::log::level::lvl)) {              \
      std::ostringstream sluice_log_os_;                                  \
      sluice_log_os_ << expr;                                             \
      ::sluice::log::write(::sluice::log::level::lvl, sluice_log_os_.str()); \
    }                                                                     \
  } while (0)
