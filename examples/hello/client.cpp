// sluice-hello-client: calls the Hello service over ONE channel and reports who answered.
//   sluice-hello-client --target HOST:PORT [--calls N] [--streaming unary|server|client|bidi]
//                       [--messages M] [--concurrency C] [--deadline-ms D] [--delay-ms D]
//                       [--name NAME]
// Prints, after all calls: "server ID COUNT" per answering server (from the response's
// server_id), "status CODE COUNT" per gRPC status, then "ok N" and "failed N".
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "hello.grpc.pb.h"

namespace {

struct options {
  std::string target;
  long calls = 1;
  std::string kind = "unary";
  int messages = 3;
  int concurrency = 1;
  int deadline_ms = 0;
  int delay_ms = 0;
  std::string name = "world";
};

struct tally {
  std::mutex m;
  std::map<std::string, long> servers;
  std::map<int, long> statuses;
  long ok = 0, failed = 0;
  void add(const std::string& server, const grpc::Status& s, bool complete) {
    std::lock_guard<std::mutex> lock(m);
    if (!server.empty()) ++servers[server];
    ++statuses[s.error_code()];
    if (s.ok() && complete) ++ok;
    else ++failed;
  }
};

void set_deadline(grpc::ClientContext& ctx, const options& o) {
  if (o.deadline_ms > 0)
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(o.deadline_ms));
}

void one_call(const options& o, hello::Hello::Stub& hello, hello::HelloStream::Stub& streams,
              tally& t) {
  grpc::ClientContext ctx;
  set_deadline(ctx, o);
  hello::HelloRequest req;
  req.set_name(o.name);
  req.set_delay_ms(o.delay_ms);
  std::string server;
  bool complete = true;
  grpc::Status status;
  if (o.kind == "unary") {
    hello::HelloResponse resp;
    status = hello.SayHello(&ctx, req, &resp);
    if (status.ok()) {
      server = resp.server_id();
      complete = resp.message() == "Hello, " + o.name + "! from " + server;
    }
  } else if (o.kind == "server") {
    req.set_count(o.messages);
    auto r = streams.ServerStream(&ctx, req);
    hello::HelloResponse resp;
    int n = 0;
    while (r->Read(&resp)) {
      if (server.empty()) server = resp.server_id();
      complete = complete && resp.seq() == n;
      ++n;
    }
    status = r->Finish();
    complete = complete && n == o.messages;
  } else if (o.kind == "client") {
    hello::HelloResponse resp;
    auto w = streams.ClientStream(&ctx, &resp);
    std::string expect;
    for (int i = 0; i < o.messages; ++i) {
      req.set_name(o.name + std::to_string(i));
      if (i) expect += ",";
      expect += req.name();
      if (!w->Write(req)) break;
    }
    w->WritesDone();
    status = w->Finish();
    if (status.ok()) {
      server = resp.server_id();
      complete = resp.seq() == o.messages && resp.message() == "Hello, " + expect + "! from " + server;
    }
  } else {  // bidi
    auto s = streams.Bidi(&ctx);
    hello::HelloResponse resp;
    int n = 0;
    for (int i = 0; i < o.messages; ++i) {
      req.set_name(o.name + std::to_string(i));
      if (!s->Write(req)) break;
      if (!s->Read(&resp)) break;
      if (server.empty()) server = resp.server_id();
      complete = complete && resp.seq() == i && resp.message() == "Hello, " + req.name() + "! from " + server;
      ++n;
    }
    s->WritesDone();
    while (s->Read(&resp)) ++n;
    status = s->Finish();
    complete = complete && n == o.messages;
  }
  t.add(server, status, complete);
}

int usage() {
  std::cerr << "usage: sluice-hello-client --target HOST:PORT [--calls N] "
               "[--streaming unary|server|client|bidi] [--messages M] [--concurrency C] "
               "[--deadline-ms D] [--delay-ms D] [--name NAME]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--target" && (v = next())) o.target = v;
    else if (a == "--calls" && (v = next())) o.calls = std::atol(v);
    else if (a == "--streaming" && (v = next())) o.kind = v;
    else if (a == "--messages" && (v = next())) o.messages = std::atoi(v);
    else if (a == "--concurrency" && (v = next())) o.concurrency = std::atoi(v);
    else if (a == "--deadline-ms" && (v = next())) o.deadline_ms = std::atoi(v);
    else if (a == "--delay-ms" && (v = next())) o.delay_ms = std::atoi(v);
    else if (a == "--name" && (v = next())) o.name = v;
    else return usage();
  }
  if (o.target.empty() || o.calls < 0 || o.concurrency < 1 ||
      (o.kind != "unary" && o.kind != "server" && o.kind != "client" && o.kind != "bidi"))
    return usage();

  auto channel = grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials());
  auto hello = hello::Hello::NewStub(channel);
  auto streams = hello::HelloStream::NewStub(channel);
  tally t;
  std::atomic<long> next_call{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < o.concurrency; ++i)
    threads.emplace_back([&] {
      while (next_call.fetch_add(1) < o.calls) one_call(o, *hello, *streams, t);
    });
  for (auto& th : threads) th.join();

  for (auto& [id, n] : t.servers) std::cout << "server " << id << " " << n << "\n";
  for (auto& [code, n] : t.statuses) std::cout << "status " << code << " " << n << "\n";
  std::cout << "ok " << t.ok << "\nfailed " << t.failed << std::endl;
  return t.failed == 0 ? 0 : 1;
}
