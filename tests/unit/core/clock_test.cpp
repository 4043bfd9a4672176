#include "sluice/core/clock.hpp"

#include <ctime>
#include <regex>
#include <string>

#include <catch2/catch.hpp>

namespace {
std::string formatted(time_t t) {
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[64];
  auto n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &parts);
  return std::string(buf, n);
}
}  // namespace

TEST_CASE("http_date: IMF-fixdate of the current second", "[core][clock]") {
  timespec before{}, after{};
  ::clock_gettime(CLOCK_REALTIME_COARSE, &before);
  std::string date(sluice::core::http_date());
  ::clock_gettime(CLOCK_REALTIME_COARSE, &after);
  CHECK(std::regex_match(date, std::regex(R"((Sun|Mon|Tue|Wed|Thu|Fri|Sat), \d\d )"
                                          R"((Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) )"
                                          R"(\d{4} \d\d:\d\d:\d\d GMT)")));
  // strftime in the C locale gives the same text.
  bool same = false;
  for (time_t t = before.tv_sec; t <= after.tv_sec; ++t) same = same || date == formatted(t);
  CHECK(same);
  // Cached within the second: the same text again.
  CHECK(std::string(sluice::core::http_date()).size() == 29);
}
