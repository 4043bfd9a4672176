// The value a route is known by in metrics: its `route` label.
#pragma once

#include <string>

#include "sluice/config/config.hpp"

namespace sluice::config {

/// The route's `name` when it has one, else its match written as host + path prefix:
/// "api.example.com/v1/", "*.example.com/", or "/v1/" for a route that matches any host.
/// Only configured values, never a request's path: the label set stays bounded by the
/// configuration. Two unnamed routes with the same match get the same label (and share their
/// series); give them names to tell them apart.
std::string route_label(const route& r);

}  // namespace sluice::config
