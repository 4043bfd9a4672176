#include "sluice/discovery/registration.hpp"

#include <catch2/catch.hpp>

using sluice::discovery::format_registration;
using sluice::discovery::parse_registration;
using sluice::discovery::registration;

namespace {
std::string reason(std::string_view v) {
  std::string err;
  auto r = parse_registration(v, &err);
  return r ? std::string("accepted") : err;
}
}  // namespace

TEST_CASE("bare host:port values", "[etcd][registration]") {
  auto r = parse_registration("127.0.0.1:8001", nullptr);
  REQUIRE(r);
  CHECK(r->address == "127.0.0.1:8001");
  CHECK(r->weight == 1);
  CHECK(parse_registration("  [::1]:9000\n", nullptr)->address == "[::1]:9000");
  CHECK(parse_registration("localhost:80", nullptr)->address == "localhost:80");
  CHECK(parse_registration("\"127.0.0.1:8002\"", nullptr)->address == "127.0.0.1:8002");
}

TEST_CASE("JSON object values", "[etcd][registration]") {
  auto r = parse_registration(
      R"({"address": "10.0.0.1:50051", "weight": 3, "protocol": "h2c", "meta": {"zone": "a"}, "extra": 1})",
      nullptr);
  REQUIRE(r);
  CHECK(r->address == "10.0.0.1:50051");
  CHECK(r->weight == 3);
  CHECK(r->protocol == "h2c");
  CHECK(parse_registration(R"({"address":"127.0.0.1:1","weight":1000})", nullptr)->weight == 1000);
  CHECK(parse_registration(R"({"address":"127.0.0.1:1","weight":2.0})", nullptr)->weight == 2);
  CHECK(parse_registration(R"({"address":"127.0.0.1:1","meta":null})", nullptr));
}

TEST_CASE("unusable values are rejected with a reason", "[etcd][registration]") {
  CHECK(reason("").rfind("empty value", 0) == 0);
  CHECK(reason("  \n").rfind("empty value", 0) == 0);
  CHECK(reason("{").rfind("invalid JSON", 0) == 0);
  CHECK(reason("{\"address\": \"127.0.0.1:1\",}").rfind("invalid JSON", 0) == 0);
  CHECK(reason("[1,2]").find("not host:port") != std::string::npos);  // not an object: an address
  CHECK(reason("{}") == "JSON value without \"address\"");
  CHECK(reason(R"({"address": 5})") == "\"address\" is not a string");
  CHECK(reason("127.0.0.1") == "address '127.0.0.1' is not host:port with a port 1-65535");
  CHECK(reason("127.0.0.1:0") == "address '127.0.0.1:0' is not host:port with a port 1-65535");
  CHECK(reason("127.0.0.1:65536") == "address '127.0.0.1:65536' is not host:port with a port 1-65535");
  CHECK(reason("127.0.0.1:http").find("not host:port") != std::string::npos);
  CHECK(reason(R"({"address": "127.0.0.1:99999"})").find("not host:port") != std::string::npos);
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": 0})") == "\"weight\" must be between 1 and 1000, got 0");
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": 1001})") == "\"weight\" must be between 1 and 1000, got 1001");
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": -3})") == "\"weight\" must be between 1 and 1000, got -3");
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": 18446744073709551615})").find("between 1 and 1000") != std::string::npos);
  // Past 2^64 the weight is a double outside int64's range (found by tests/fuzz under UBSan).
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": 18446744073709551618})")
            .rfind("\"weight\" is not an integer", 0) == 0);
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": -1e300})").rfind("\"weight\"", 0) == 0);
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": "2"})").rfind("\"weight\" is not an integer", 0) == 0);
  CHECK(reason(R"({"address": "127.0.0.1:1", "weight": 1.5})").rfind("\"weight\" is not an integer", 0) == 0);
  CHECK(reason(R"({"address": "127.0.0.1:1", "protocol": 2})") == "\"protocol\" is not a string");
  CHECK(reason(R"({"address": "127.0.0.1:1", "meta": []})") == "\"meta\" is not an object");
  CHECK(reason("\"\"").find("not host:port") != std::string::npos);
  CHECK(reason("true").find("not host:port") != std::string::npos);
  // Binary garbage is quoted back printable and short.
  auto garbage = reason(std::string("\x01\x02zz") + std::string(200, 'x'));
  CHECK(garbage.find('\x01') == std::string::npos);
  CHECK(garbage.size() < 140);
  // A host is printable ASCII: bytes that cannot resolve (and would reach log lines as they
  // came) are refused, in both forms. Found by tests/fuzz (etcd).
  CHECK(reason("127.0.0.\xff\xff" "1:8001").find("not host:port") != std::string::npos);
  CHECK(reason("a b:80").find("not host:port") != std::string::npos);
  CHECK(reason(R"({"address": "a\u0001b:80"})").find("not host:port") != std::string::npos);
  CHECK(reason(R"("h\u00e9:80")").find("not host:port") != std::string::npos);
}

TEST_CASE("format_registration round-trips", "[etcd][registration]") {
  registration r{"127.0.0.1:8001", 7, ""};
  CHECK(format_registration(r) == R"({"address":"127.0.0.1:8001","weight":7})");
  auto back = parse_registration(format_registration(r), nullptr);
  REQUIRE(back);
  CHECK(back->address == r.address);
  CHECK(back->weight == 7);
}
