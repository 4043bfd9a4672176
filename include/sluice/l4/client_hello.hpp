// Reads the server_name (SNI) out of a TLS ClientHello without terminating TLS. Sans-I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sluice::l4 {

struct client_hello {
  enum class status { complete, need_more, invalid } state = status::need_more;
  /// Lowercased host_name from the server_name extension, without a trailing dot; empty when
  /// the ClientHello has none, or when it is not a plausible host name (then `bad_name` is set).
  std::string server_name;
  bool bad_name = false;
};

/// Parses TLS records at the start of `data` (the first bytes a client sent) up to the end of
/// the ClientHello handshake message, which may span several records. `need_more` while more
/// bytes could complete it; `invalid` when the bytes are not a TLS handshake starting with a
/// ClientHello or are malformed (lengths that overrun, a record that is not a handshake).
/// The caller bounds how many bytes it is willing to buffer.
client_hello parse_client_hello(std::span<const std::uint8_t> data);

}  // namespace sluice::l4
