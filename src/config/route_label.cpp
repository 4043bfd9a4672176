#include "sluice/config/route_label.hpp"

namespace sluice::config {

std::string route_label(const route& r) {
  if (!r.name.empty()) return r.name;
  return r.match.host + r.match.path_prefix;
}

}  // namespace sluice::config
