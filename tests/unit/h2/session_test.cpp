#include "sluice/h2/session.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "sluice/h2/preface.hpp"

using namespace sluice::h2;

namespace {

// Records every event of one side.
struct recorder : session_handler {
  struct stream {
    header_list headers;
    header_list trailers;
    std::string body;
    bool ended = false;
    bool closed = false;
    std::uint32_t close_code = 0;
  };
  std::map<std::int32_t, stream> streams;
  std::vector<std::int32_t> opened;
  std::size_t sent = 0;
  bool goaway = false;
  std::uint32_t goaway_code = 0;

  void on_headers(std::int32_t id, header_list& h, bool trailers, bool) override {
    if (trailers) streams[id].trailers = h;
    else {
      streams[id].headers = h;
      opened.push_back(id);
    }
  }
  void on_data(std::int32_t id, std::span<const std::uint8_t> d) override {
    streams[id].body.append(reinterpret_cast<const char*>(d.data()), d.size());
  }
  void on_end_stream(std::int32_t id) override { streams[id].ended = true; }
  void on_stream_close(std::int32_t id, std::uint32_t code) override {
    streams[id].closed = true;
    streams[id].close_code = code;
  }
  void on_data_sent(std::int32_t, std::size_t n) override { sent += n; }
  void on_goaway(std::int32_t, std::uint32_t code) override {
    goaway = true;
    goaway_code = code;
  }
};

// Moves bytes both ways until neither side has anything to say. Returns bytes moved.
std::size_t pump(session& a, session& b) {
  std::size_t total = 0;
  for (int round = 0; round < 1000; ++round) {
    std::string ab, ba;
    a.send(ab);
    b.send(ba);
    if (ab.empty() && ba.empty()) break;
    total += ab.size() + ba.size();
    if (!ab.empty()) b.receive(ab);
    if (!ba.empty()) a.receive(ba);
  }
  return total;
}

header_list grpc_request() {
  return {{":method", "POST"},       {":scheme", "http"},
          {":authority", "hello"},   {":path", "/hello.Hello/SayHello"},
          {"content-type", "application/grpc"}, {"te", "trailers"}};
}

}  // namespace

TEST_CASE("client and server sessions exchange a request and a response with trailers",
          "[h2][session]") {
  recorder ch, sh;
  session client(role::client, ch), server(role::server, sh);
  auto id = client.submit_request(grpc_request(), false);
  REQUIRE(id == 1);
  client.send_data(id, std::string_view("\0\0\0\0\5hello", 10));
  client.end_stream(id);
  pump(client, server);

  REQUIRE(sh.streams.count(id));
  auto& req = sh.streams[id];
  CHECK(find_header(req.headers, ":path") == "/hello.Hello/SayHello");
  CHECK(find_header(req.headers, "te") == "trailers");
  CHECK(req.body.size() == 10);
  CHECK(req.ended);
  server.consume(id, req.body.size());

  REQUIRE(server.submit_response(id, {{":status", "200"}, {"content-type", "application/grpc"}},
                                 false));
  server.send_data(id, std::string_view("\0\0\0\0\5world", 10));
  header_list trailers{{"grpc-status", "0"}, {"grpc-message", "ok"}};
  server.end_stream(id, &trailers);
  pump(client, server);

  auto& resp = ch.streams[id];
  CHECK(find_header(resp.headers, ":status") == "200");
  CHECK(resp.body.size() == 10);
  CHECK(find_header(resp.trailers, "grpc-status") == "0");
  CHECK(find_header(resp.trailers, "grpc-message") == "ok");
  CHECK(resp.ended);
  CHECK(resp.closed);
  CHECK(resp.close_code == 0);
  CHECK(sh.streams[id].closed);
  CHECK(client.open_streams() == 0);
  CHECK(server.open_streams() == 0);
}

TEST_CASE("trailers-only response ends the stream in one header block", "[h2][session]") {
  recorder ch, sh;
  session client(role::client, ch), server(role::server, sh);
  auto id = client.submit_request(grpc_request(), true);
  pump(client, server);
  server.submit_response(id, {{":status", "200"}, {"content-type", "application/grpc"},
                              {"grpc-status", "14"}}, true);
  pump(client, server);
  CHECK(find_header(ch.streams[id].headers, "grpc-status") == "14");
  CHECK(ch.streams[id].ended);
  CHECK(ch.streams[id].close_code == 0);
}

TEST_CASE("a slow consumer bounds what is buffered by the receive window", "[h2][session]") {
  recorder ch, sh;
  settings st;
  st.initial_window_size = 64 * 1024;
  st.connection_window_size = 1024 * 1024;
  session client(role::client, ch, st), server(role::server, sh, st);
  auto id = client.submit_request(grpc_request(), false);
  const std::size_t total = 1024 * 1024;
  client.send_data(id, std::string(total, 'x'));
  client.end_stream(id);
  pump(client, server);

  // Nothing consumed: the server has at most one window, the rest waits in the client.
  auto& got = sh.streams[id].body;
  CHECK(got.size() == st.initial_window_size);
  CHECK(client.outbound_size(id) == total - got.size());
  CHECK(ch.sent == got.size());

  // Consume as a downstream would accept it: exactly the consumed amount flows again.
  std::size_t consumed = 0;
  for (int i = 0; i < 100 && got.size() < total; ++i) {
    std::size_t now = got.size();
    server.consume(id, now - consumed);
    consumed = now;
    pump(client, server);
    CHECK(got.size() - consumed <= st.initial_window_size);
  }
  CHECK(got.size() == total);
  CHECK(sh.streams[id].ended);
}

TEST_CASE("rapid reset floods get GOAWAY ENHANCE_YOUR_CALM", "[h2][session][security]") {
  recorder ch, sh;
  settings st;
  st.reset_burst = 20;
  st.reset_rate = 1;
  session client(role::client, ch), server(role::server, sh, st);
  bool server_ok = true;
  for (int i = 0; i < 200 && !ch.goaway; ++i) {
    auto id = client.submit_request(grpc_request(), false);
    if (id < 0) break;
    std::string out;
    client.send(out);
    client.reset(id, error::cancel);
    client.send(out);
    server_ok = server.receive(out) && server_ok;
    std::string back;
    server.send(back);
    client.receive(back);
  }
  CHECK(ch.goaway);
  CHECK(ch.goaway_code == error::enhance_your_calm);
}

TEST_CASE("a header block over the limit resets the stream, the connection lives on",
          "[h2][session][security]") {
  recorder ch, sh;
  settings st;
  st.max_header_list_size = 1024;
  session client(role::client, ch), server(role::server, sh, st);
  auto big = grpc_request();
  big.push_back({"x-big", std::string(4000, 'a')});
  auto id1 = client.submit_request(big, true);
  pump(client, server);
  CHECK(ch.streams[id1].closed);
  CHECK(ch.streams[id1].close_code != 0);
  auto id2 = client.submit_request(grpc_request(), true);
  pump(client, server);
  CHECK(sh.streams.count(id2) == 1);
  CHECK_FALSE(ch.goaway);
}

TEST_CASE("a server session rejects bytes that are not a preface", "[h2][session]") {
  recorder sh;
  session server(role::server, sh);
  CHECK_FALSE(server.receive(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string out;
  server.send(out);
  CHECK(server.failed());
}

TEST_CASE("a client honours the peer's max concurrent streams", "[h2][session]") {
  recorder ch, sh;
  settings st;
  st.max_concurrent_streams = 2;
  session client(role::client, ch), server(role::server, sh, st);
  pump(client, server);
  CHECK(client.peer_max_concurrent_streams() == 2);
  client.submit_request(grpc_request(), false);
  CHECK(client.can_open_stream());
  client.submit_request(grpc_request(), false);
  CHECK_FALSE(client.can_open_stream());
}
