#include "sluice/health/outlier.hpp"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace std::chrono_literals;

TEST_CASE("ejection time grows linearly and is capped", "[health][outlier]") {
  CHECK(health::ejection_time(1, 30s, 300s) == 30s);
  CHECK(health::ejection_time(2, 30s, 300s) == 60s);
  CHECK(health::ejection_time(3, 30s, 300s) == 90s);
  CHECK(health::ejection_time(10, 30s, 300s) == 300s);
  CHECK(health::ejection_time(11, 30s, 300s) == 300s);
  CHECK(health::ejection_time(0xffffffffu, 30s, 300s) == 300s);  // no overflow
  CHECK(health::ejection_time(0, 30s, 300s) == 30s);             // 0 counts as 1
  CHECK(health::ejection_time(5, 30s, 10s) == 30s);              // cap below base: base
}

TEST_CASE("max_ejection_percent caps the ejected share, one ejection always allowed", "[health][outlier]") {
  CHECK(health::may_eject(0, 3, 50));
  CHECK_FALSE(health::may_eject(1, 3, 50));  // 2 of 3 = 67% > 50%
  CHECK(health::may_eject(1, 4, 50));        // 2 of 4 = 50%
  CHECK_FALSE(health::may_eject(2, 4, 50));
  CHECK(health::may_eject(0, 2, 10));        // at least one, whatever the percent
  CHECK_FALSE(health::may_eject(1, 2, 10));
  CHECK(health::may_eject(2, 3, 100));
  CHECK_FALSE(health::may_eject(3, 3, 100));  // nothing left to eject
  CHECK_FALSE(health::may_eject(0, 0, 100));
  CHECK(health::may_eject(9, 10, 100));
  CHECK_FALSE(health::may_eject(1, 10, 10));
}

TEST_CASE("repeated ejections grow; a long quiet period resets the multiplier", "[health][outlier]") {
  config::outlier_detection cfg;
  cfg.base_ejection = 10s;
  cfg.max_ejection = 100s;
  health::ejection_record r;
  const auto t0 = std::chrono::steady_clock::time_point{} + 1000h;
  CHECK(r.eject(t0, cfg) == 10s);
  r.returned(t0 + 10s);
  CHECK(r.eject(t0 + 20s, cfg) == 20s);
  r.returned(t0 + 40s);
  CHECK(r.eject(t0 + 50s, cfg) == 30s);
  CHECK(r.multiplier() == 3);
  r.returned(t0 + 80s);
  // In service for max_ejection since the last return: forgiven.
  CHECK(r.eject(t0 + 180s, cfg) == 10s);
  CHECK(r.multiplier() == 1);
  for (int i = 0; i < 20; ++i) {
    r.returned(t0 + 200s);
    r.eject(t0 + 201s, cfg);
  }
  CHECK(r.eject(t0 + 202s, cfg) == 100s);
}
