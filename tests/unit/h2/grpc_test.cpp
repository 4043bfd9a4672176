#include "sluice/h2/grpc.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
namespace grpc = sluice::h2::grpc;

TEST_CASE("grpc-timeout values", "[h2][grpc]") {
  CHECK(grpc::parse_timeout("1S") == 1000ms);
  CHECK(grpc::parse_timeout("300m") == 300ms);
  CHECK(grpc::parse_timeout("2M") == 120000ms);
  CHECK(grpc::parse_timeout("1H") == 3600000ms);
  CHECK(grpc::parse_timeout("1500u") == 2ms);  // rounded up
  CHECK(grpc::parse_timeout("1n") == 1ms);
  CHECK(grpc::parse_timeout("0m") == 0ms);
  CHECK(grpc::parse_timeout("99999999H") == std::chrono::milliseconds(100LL * 24 * 3600 * 1000));
}

TEST_CASE("malformed grpc-timeout values are ignored", "[h2][grpc]") {
  CHECK_FALSE(grpc::parse_timeout(""));
  CHECK_FALSE(grpc::parse_timeout("S"));
  CHECK_FALSE(grpc::parse_timeout("10"));
  CHECK_FALSE(grpc::parse_timeout("10s"));
  CHECK_FALSE(grpc::parse_timeout("-1S"));
  CHECK_FALSE(grpc::parse_timeout("123456789S"));  // more than 8 digits
  CHECK_FALSE(grpc::parse_timeout("1 S"));
}

TEST_CASE("gRPC content types", "[h2][grpc]") {
  CHECK(grpc::is_grpc("application/grpc"));
  CHECK(grpc::is_grpc("application/grpc+proto"));
  CHECK(grpc::is_grpc("application/grpc;charset=utf-8"));
  CHECK_FALSE(grpc::is_grpc("application/grpc-web"));
  CHECK_FALSE(grpc::is_grpc("application/json"));
  CHECK_FALSE(grpc::is_grpc(""));
}
