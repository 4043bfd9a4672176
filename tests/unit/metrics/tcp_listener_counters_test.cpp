#include "sluice/metrics/tcp_listener_counters.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>

using namespace sluice;

TEST_CASE("tcp close reasons have distinct label values", "[metrics]") {
  std::set<std::string> names;
  for (unsigned k = 0; k < metrics::tcp_close_reasons; ++k)
    names.insert(metrics::to_string(static_cast<metrics::tcp_close_reason>(k)));
  CHECK(names.size() == metrics::tcp_close_reasons);
  CHECK(names.count("refused") == 1);
  CHECK(names.count("other") == 0);
}

TEST_CASE("tcp_listener_counters count by reason", "[metrics]") {
  metrics::tcp_listener_counters c;
  c.on_close(metrics::tcp_close_reason::idle_timeout);
  c.on_close(metrics::tcp_close_reason::idle_timeout);
  c.on_close(metrics::tcp_close_reason::bad_preamble);
  CHECK(c.closed_by(metrics::tcp_close_reason::idle_timeout) == 2);
  CHECK(c.closed_by(metrics::tcp_close_reason::bad_preamble) == 1);
  CHECK(c.closed_by(metrics::tcp_close_reason::refused) == 0);
}
