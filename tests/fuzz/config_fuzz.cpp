// Fuzz target: the YAML configuration loader (load_string), the value parsers it uses
// (parse_duration, parse_size), and the configuration diff over what it accepts.
//
// Input: the configuration text, as it would be in the file. Every error must come back as a
// diagnostic; load_string never throws.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "sluice/config/diff.hpp"
#include "sluice/config/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // Scalars: the first line, when short, as a duration and as a size.
  const std::string_view first = text.substr(0, text.find('\n'));
  if (first.size() <= 64) {
    if (auto d = sluice::config::parse_duration(first)) {
      FUZZ_CHECK(d->count() >= 0);
      // The diff prints durations so that they read back the same.
      auto again = sluice::config::parse_duration(sluice::config::format_duration(*d));
      FUZZ_CHECK(again && *again == *d);
    }
    (void)sluice::config::parse_size(first);
  }

  const sluice::config::load_result r = sluice::config::load_string(text, "fuzz.yaml");
  FUZZ_CHECK(r.value.has_value() == r.errors.empty());
  for (const auto& e : r.errors) {
    FUZZ_CHECK(e.file == "fuzz.yaml");
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(e.line >= 0 && e.column >= 0);
    FUZZ_CHECK(!e.to_string().empty());
  }
  if (r.value) {
    // An accepted configuration compared with itself: no difference.
    FUZZ_CHECK(sluice::config::diff(*r.value, *r.value).empty());
    const auto view = sluice::config::status_view(*r.value);
    FUZZ_CHECK(sluice::config::diff(view, view).empty());
  }
  return 0;
}
