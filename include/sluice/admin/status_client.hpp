// Reads a running instance's configuration back from its admin /status document (for --diff-admin).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/config/config.hpp"

namespace sluice::admin {

/// Fetches `GET /status` from an admin listener. `url` is `http://HOST:PORT[/]` or `HOST:PORT`
/// (HOST an IP address or a name; https is not spoken by the admin listener). `token`, when not
/// empty, is sent as `Authorization: Bearer TOKEN`. Blocks for at most `timeout` in total.
/// Returns the response body, or nullopt with a one-line reason in *error (unreachable, not
/// 200, a 401 asking for a token, too large). Never throws.
std::optional<std::string> fetch_status(std::string_view url, std::string_view token,
                                        std::chrono::milliseconds timeout, std::string* error);

/// The part of a configuration a /status document shows, as config::status_view(cfg) of the
/// running configuration would give it: listeners (name, address, protocol, tcp cluster,
/// routes with their match, cluster or direct status), clusters (name, policy, protocol, health
/// check type, discovery on or off, current backends with weights; with discovery the backends
/// include the discovered ones). `file` is the running instance's configuration file.
/// nullopt with the reason in *error when the text is not such a document. Never throws.
std::optional<config::config> config_from_status(std::string_view json_text, std::string* error);

}  // namespace sluice::admin
