// The admin status page: one self-contained HTML document embedded in the binary.
#pragma once

#include <string_view>

namespace sluice::admin {

/// HTML + inline CSS + inline script; polls /status every second. No external resources.
std::string_view status_page_html() noexcept;

}  // namespace sluice::admin
