// systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram to $NOTIFY_SOCKET.
#pragma once

#include <string>
#include <string_view>

namespace sluice::net {

/// Sends `state` (e.g. "READY=1", "STOPPING=1", "RELOADING=1", "STATUS=serving", several
/// assignments separated by '\n') to the AF_UNIX datagram socket named by $NOTIFY_SOCKET: a
/// filesystem path, or an abstract socket written with a leading '@'. A no-op when the variable
/// is unset or empty (not started by systemd with Type=notify). Never throws; returns false when
/// the message could not be sent (the reason in *error when given), true when sent or when
/// there is nowhere to send it. Thread-safe.
bool sd_notify(std::string_view state, std::string* error = nullptr) noexcept;

}  // namespace sluice::net
