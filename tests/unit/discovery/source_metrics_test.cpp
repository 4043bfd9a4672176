#include "sluice/discovery/source_metrics.hpp"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace std::chrono_literals;

TEST_CASE("source_state reads as a metrics sample", "[discovery]") {
  discovery::source_state s;
  const auto now = std::chrono::system_clock::time_point(1'700'000'000'000ms);

  auto a = discovery::sample(s, now);
  CHECK(a.state == metrics::discovery_state::connecting);
  CHECK_FALSE(a.connected);
  CHECK_FALSE(a.last_event_age);

  s.last_contact_ms = 1'700'000'000'000 - 5000;
  s.last_event_ms = 1'700'000'000'000 - 2500;
  s.revision = 17;
  s.skipped_values = 2;
  s.updates = 3;
  s.full_reads = 1;
  s.endpoints = 4;
  s.connected = true;
  a = discovery::sample(s, now);
  CHECK(a.state == metrics::discovery_state::watching);
  CHECK(a.connected);
  REQUIRE(a.last_event_age);
  CHECK(*a.last_event_age == Approx(2.5));
  CHECK(a.revision == 17);
  CHECK(a.skipped == 2);
  CHECK(a.updates == 3);
  CHECK(a.full_reads == 1);
  CHECK(a.endpoints == 4);

  s.connected = false;
  s.disconnects = 1;
  a = discovery::sample(s, now);
  CHECK(a.state == metrics::discovery_state::error);
  CHECK(a.disconnects == 1);

  // A clock that went backwards never gives a negative age.
  s.last_event_ms = 1'700'000'000'000 + 10'000;
  a = discovery::sample(s, now);
  REQUIRE(a.last_event_age);
  CHECK(*a.last_event_age == 0.0);
}

TEST_CASE("a failed first attempt reads as error", "[discovery]") {
  discovery::source_state s;
  s.disconnects = 1;
  CHECK(discovery::sample(s, std::chrono::system_clock::now()).state ==
        metrics::discovery_state::error);
}
