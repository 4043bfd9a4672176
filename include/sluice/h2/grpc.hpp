// gRPC over HTTP/2 details the proxy needs: status codes and the grpc-timeout header.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace sluice::h2::grpc {

/// Status codes (grpc/doc/statuscodes.md) that the proxy itself answers with.
enum class status : int {
  ok = 0,
  deadline_exceeded = 4,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
};

/// True for a gRPC request: content-type application/grpc, optionally +proto, ;charset...
bool is_grpc(std::string_view content_type) noexcept;

/// Parses `grpc-timeout` ("1*8DIGIT unit", unit one of H M S m u n) into milliseconds, rounded
/// up (so 1n is 1ms, never 0) and capped at 100 days. nullopt for a malformed value.
std::optional<std::chrono::milliseconds> parse_timeout(std::string_view value) noexcept;

}  // namespace sluice::h2::grpc
