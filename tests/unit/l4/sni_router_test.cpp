#include "sluice/l4/sni_router.hpp"

#include <catch2/catch.hpp>

using sluice::l4::sni_router;

TEST_CASE("sni_router prefers exact names, then the longest wildcard, then the fallback", "[sni]") {
  sni_router r({{"*.example.com", 1}, {"db.example.com", 2}, {"*.eu.example.com", 3}, {"example.org", 4}}, 9);
  CHECK(r.route("db.example.com") == 2);
  CHECK(r.route("web.example.com") == 1);
  CHECK(r.route("a.b.example.com") == 1);
  CHECK(r.route("db.eu.example.com") == 3);
  CHECK(r.route("example.com") == 9);      // a wildcard needs at least one more label
  CHECK(r.route("xexample.com") == 9);
  CHECK(r.route("example.org") == 4);
  CHECK(r.route("www.example.org") == 9);
  CHECK(r.route("") == 9);
  CHECK(r.fallback() == 9);
  sni_router none({}, -1);
  CHECK(none.route("db.example.com") == -1);
}
