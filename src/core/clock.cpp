#include "sluice/core/clock.hpp"

namespace sluice::core {

std::string_view http_date() noexcept {
  thread_local time_t cached_second = -1;
  thread_local char text[32];
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  if (ts.tv_sec != cached_second) {
    static constexpr char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    auto two = [](char* p, int v) {
      p[0] = static_cast<char>('0' + v / 10);
      p[1] = static_cast<char>('0' + v % 10);
    };
    // "Sun, 06 Nov 1994 08:49:37 GMT": 29 bytes.
    char* p = text;
    for (int i = 0; i < 3; ++i) *p++ = days[t.tm_wday][i];
    *p++ = ',';
    *p++ = ' ';
    two(p, t.tm_mday);
    p += 2;
    *p++ = ' ';
    for (int i = 0; i < 3; ++i) *p++ = months[t.tm_mon][i];
    *p++ = ' ';
    int year = t.tm_year + 1900;
    two(p, year / 100 % 100);
    two(p + 2, year % 100);
    p += 4;
    *p++ = ' ';
    two(p, t.tm_hour);
    two(p + 3, t.tm_min);
    two(p + 6, t.tm_sec);
    p[2] = p[5] = ':';
    p += 8;
    *p++ = ' ';
    *p++ = 'G';
    *p++ = 'M';
    *p++ = 'T';
    cached_second = ts.tv_sec;
  }
  return {text, 29};
}

}  // namespace sluice::core
