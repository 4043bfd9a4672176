#include "sluice/h2/preface.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace sluice::h2;

TEST_CASE("the h2c prior-knowledge preface is recognised", "[h2][preface]") {
  std::string p(client_preface);
  CHECK(p.size() == 24);
  CHECK(looks_like_preface(p));
  CHECK(looks_like_preface(p + "\x00\x00\x12\x04"));
  CHECK_FALSE(looks_like_preface(p.substr(0, 23)));
  CHECK_FALSE(looks_like_preface("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK_FALSE(looks_like_preface("PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n"));
  CHECK_FALSE(looks_like_preface(""));
}

TEST_CASE("a partial preface asks for more bytes", "[h2][preface]") {
  CHECK(could_be_preface(""));
  CHECK(could_be_preface("P"));
  CHECK(could_be_preface("PRI * HTTP/2.0\r\n"));
  CHECK_FALSE(could_be_preface("POST / HTTP/1.1"));
  CHECK_FALSE(could_be_preface("G"));
  CHECK_FALSE(could_be_preface(std::string(client_preface)));  // complete: decide now
}
