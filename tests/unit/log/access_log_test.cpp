#include "sluice/log/access_log.hpp"
#include <cstdio>
#include <unistd.h>
#include <cstdlib>

#include <catch2/catch.hpp>

using namespace sluice::log;

namespace {
access_entry sample() {
  access_entry e;
  e.client_ip = "127.0.0.1";
  e.time = std::chrono::system_clock::time_point(std::chrono::seconds(1795611079));  // 2026-11-25T12:51:19Z
  e.method = "GET";
  e.target = "/index.html";
  e.status = 200;
  e.body_bytes_sent = 612;
  e.user_agent = "curl/7.88.1";
  e.upstream_addr = "127.0.0.1:8001";
  e.upstream_seconds = 0.004;
  e.request_seconds = 0.002;
  return e;
}
}  // namespace

TEST_CASE("combined format matches nginx plus upstream fields", "[log]") {
  std::string out;
  format_combined(out, sample());
  CHECK(out ==
        "127.0.0.1 - - [25/Nov/2026:12:51:19 +0000] \"GET /index.html HTTP/1.1\" 200 612 \"-\" "
        "\"curl/7.88.1\" \"127.0.0.1:8001\" 0.004 0.002");
}

TEST_CASE("combined format escapes quotes and control bytes, dashes for no upstream", "[log]") {
  auto e = sample();
  e.target = "/a\"b\x01";
  e.upstream_addr = {};
  e.upstream_seconds = -1;
  std::string out;
  format_combined(out, e);
  CHECK(out.find("\"GET /a\\x22b\\x01 HTTP/1.1\"") != std::string::npos);
  CHECK(out.find("\"-\" - 0.002") != std::string::npos);
}

TEST_CASE("json format is one object with nulls for missing upstream", "[log]") {
  auto e = sample();
  e.upstream_addr = {};
  e.upstream_seconds = -1;
  e.user_agent = "x\"y\n";
  std::string out;
  format_json(out, e);
  CHECK(out.front() == '{');
  CHECK(out.back() == '}');
  CHECK(out.find("\"upstream\":null") != std::string::npos);
  CHECK(out.find("\"user_agent\":\"x\\\"y\\n\"") != std::string::npos);
  CHECK(out.find("\"status\":200") != std::string::npos);
  CHECK(out.find("\"time\":\"2026-11-25T12:51:19.000Z\"") != std::string::npos);
}

TEST_CASE("HTTP/2 lines: protocol HTTP/2.0, grpc_status in json only when set", "[log]") {
  auto e = sample();
  e.version = 20;
  std::string combined, json;
  format_combined(combined, e);
  format_json(json, e);
  CHECK(combined.find("\"GET /index.html HTTP/2.0\" 200 612") != std::string::npos);
  CHECK(json.find("\"protocol\":\"HTTP/2.0\"") != std::string::npos);
  CHECK(json.find("grpc_status") == std::string::npos);
  e.grpc_status = 14;
  json.clear();
  format_json(json, e);
  CHECK(json.find("\"status\":200,\"grpc_status\":14,") != std::string::npos);
  std::string combined2;
  format_combined(combined2, e);
  CHECK(combined2 == combined);  // combined stays nginx's layout
}

TEST_CASE("writer batches lines and flushes to the file", "[log]") {
  char tmpl[] = "/tmp/sluice-access-XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  {
    auto sink = access_log::open(tmpl, access_log::format::combined);
    REQUIRE(sink);
    access_log::writer w(sink);
    w.append(sample());
    w.append(sample());
  }  // destructor flushes
  FILE* f = std::fopen(tmpl, "r");
  REQUIRE(f);
  char buf[1024];
  int lines = 0;
  while (std::fgets(buf, sizeof buf, f)) ++lines;
  std::fclose(f);
  std::remove(tmpl);
  CHECK(lines == 2);
}

TEST_CASE("off sink is disabled and a bad path is an error", "[log]") {
  auto off = access_log::open("off", access_log::format::combined);
  REQUIRE(off);
  CHECK_FALSE(off->enabled());
  std::string err;
  CHECK(access_log::open("/nonexistent-dir/x.log", access_log::format::combined, &err) == nullptr);
  CHECK(err.find("/nonexistent-dir/x.log") != std::string::npos);
}
