#include "sluice/config/loader.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sluice::config::parse_duration;
using sluice::config::parse_size;

TEST_CASE("parse_duration accepts unit groups", "[config]") {
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("2s") == 2s);
  CHECK(parse_duration("1m") == 1min);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("1m30s") == 90s);
  CHECK(parse_duration("1h2m3s4ms") == 1h + 2min + 3s + 4ms);
  CHECK(parse_duration("0s") == 0ms);
  CHECK(parse_duration("0ms") == 0ms);
  CHECK(parse_duration("90s") == 90s);
  CHECK(parse_duration("1500ms") == 1500ms);
}

TEST_CASE("parse_duration rejects everything else", "[config]") {
  for (const char* bad : {"", "0", "30", "s", "ms", "-1s", "+1s", "1.5s", "1 s", " 1s", "1s ",
                          "1S", "1sec", "1d", "1x", "1s1m", "1s1s", "1ms1s", "1m1m", "abc", "1s-",
                          "99999999999999999999s", "9999999999999999h"}) {
    INFO("text: '" << bad << "'");
    CHECK_FALSE(parse_duration(bad).has_value());
  }
}

TEST_CASE("parse_size accepts bytes and binary suffixes", "[config]") {
  CHECK(parse_size("0") == 0u);
  CHECK(parse_size("8192") == 8192u);
  CHECK(parse_size("512k") == 512u * 1024);
  CHECK(parse_size("512K") == 512u * 1024);
  CHECK(parse_size("1m") == 1024u * 1024);
  CHECK(parse_size("10M") == 10u * 1024 * 1024);
  CHECK(parse_size("2g") == 2ull * 1024 * 1024 * 1024);
  for (const char* bad : {"", "k", "-1", "1.5m", "1kb", "1KiB", "1 k", "1t", "x",
                          "99999999999999999999", "17179869184g"}) {
    INFO("text: '" << bad << "'");
    CHECK_FALSE(parse_size(bad).has_value());
  }
}
