#include "sluice/pool/slow_start.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sluice::pool::slow_start_scale;
using sluice::pool::slow_start_weight;

TEST_CASE("slow start ramps linearly from 1 to the full scaled weight", "[pool][slow_start]") {
  static_assert(slow_start_scale == 10);
  CHECK(slow_start_weight(1, 0s, 10s) == 1);
  CHECK(slow_start_weight(1, 1s, 10s) == 1);
  CHECK(slow_start_weight(1, 5s, 10s) == 5);
  CHECK(slow_start_weight(1, 9999ms, 10s) == 9);
  CHECK(slow_start_weight(1, 10s, 10s) == 10);
  CHECK(slow_start_weight(1, 1h, 10s) == 10);
  CHECK(slow_start_weight(3, 5s, 10s) == 15);
  CHECK(slow_start_weight(3, 2500ms, 10s) == 7);
  CHECK(slow_start_weight(1000, 1ns, 10s) == 1);  // never 0
  CHECK(slow_start_weight(2, -5s, 10s) == 1);     // clock skew: start of the ramp
  CHECK(slow_start_weight(0, 10s, 10s) == 10);    // weight 0 counts as 1
}

TEST_CASE("no window means full weight", "[pool][slow_start]") {
  CHECK(slow_start_weight(4, 0s, 0s) == 40);
  CHECK(slow_start_weight(4, 1s, -1s) == 40);
  CHECK(slow_start_weight(0xffffffffu, 1s, 0s) == 0xffffffffu);  // clamped, no wrap
}

TEST_CASE("the ramp is monotonic", "[pool][slow_start]") {
  std::uint32_t last = 0;
  for (int ms = 0; ms <= 2000; ms += 7) {
    const auto w = slow_start_weight(7, std::chrono::milliseconds(ms), 2s);
    CHECK(w >= last);
    CHECK(w >= 1);
    CHECK(w <= 70);
    last = w;
  }
  CHECK(last == 69);  // 1995ms of 2s
  CHECK(slow_start_weight(7, 2s, 2s) == 70);
}
