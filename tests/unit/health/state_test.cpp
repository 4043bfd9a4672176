#include "sluice/health/state.hpp"

#include <catch2/catch.hpp>

#include <string>

using sluice::health::hysteresis;

namespace {

// Feeds "+" (pass) / "-" (fail) and returns the state after each result: "H" healthy, "U" not.
std::string run(hysteresis& h, const std::string& results) {
  std::string out;
  for (char c : results) {
    h.observe(c == '+');
    out += h.healthy() ? 'H' : 'U';
  }
  return out;
}

}  // namespace

TEST_CASE("healthy goes down after exactly `fall` failures in a row", "[health][state]") {
  hysteresis h(2, 3, hysteresis::start::healthy);
  CHECK(h.healthy());
  CHECK(h.confirmed());
  CHECK(run(h, "--") == "HH");
  CHECK(h.failures() == 2);
  CHECK(h.observe(false));  // third failure: flips
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.observe(false));  // stays down, no new flip
}

TEST_CASE("unhealthy comes up after exactly `rise` passes in a row", "[health][state]") {
  hysteresis h(2, 3, hysteresis::start::unhealthy);
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.observe(true));
  CHECK(h.passes() == 1);
  CHECK(h.observe(true));
  CHECK(h.healthy());
  CHECK_FALSE(h.observe(true));
}

TEST_CASE("exact rise/fall sequences", "[health][state]") {
  hysteresis h(2, 3, hysteresis::start::healthy);
  CHECK(run(h, "---++-+++---") == "HHUUHHHHHHHU");
  hysteresis one(1, 1, hysteresis::start::healthy);
  CHECK(run(one, "-+-+") == "UHUH");
}

TEST_CASE("a flapping backend keeps its state", "[health][state]") {
  hysteresis up(2, 2, hysteresis::start::healthy);
  CHECK(run(up, "-+-+-+-+-+") == "HHHHHHHHHH");
  hysteresis down(2, 2, hysteresis::start::unhealthy);
  CHECK(run(down, "+-+-+-+-+-") == "UUUUUUUUUU");
  // A streak interrupted one short of the threshold starts over.
  hysteresis h(3, 3, hysteresis::start::healthy);
  CHECK(run(h, "--+--+---") == "HHHHHHHHU");
}

TEST_CASE("optimistic start: the first result decides at once", "[health][state]") {
  hysteresis fails(2, 3);
  CHECK(fails.healthy());
  CHECK_FALSE(fails.confirmed());
  CHECK(fails.observe(false));  // one failure is enough before confirmation
  CHECK_FALSE(fails.healthy());
  CHECK(fails.confirmed());
  CHECK(run(fails, "+-++") == "UUUH");  // then the usual rise applies

  hysteresis passes(2, 3);
  CHECK_FALSE(passes.observe(true));
  CHECK(passes.confirmed());
  CHECK(passes.healthy());
  CHECK(run(passes, "--") == "HH");  // confirmed: needs the full fall
  CHECK(run(passes, "-") == "U");
}

TEST_CASE("thresholds below 1 count as 1 and streaks saturate", "[health][state]") {
  hysteresis h(0, 0, hysteresis::start::healthy);
  CHECK(run(h, "-+") == "UH");
  hysteresis s(2, 2, hysteresis::start::healthy);
  for (int i = 0; i < 100000; ++i) s.observe(true);
  CHECK(s.passes() == 2);
  CHECK(run(s, "--") == "HU");
}
