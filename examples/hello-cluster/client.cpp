// sluice-hello-cluster-client: calls hello.Hello/SayHello through sluice on ONE channel and
// shows which server answered.
//   sluice-hello-cluster-client --target HOST:PORT [--calls N] [--concurrency C] [--rate R]
//                               [--deadline-ms D] [--delay-ms D] [--name NAME] [--each]
//                               [--stream] [--report-json]
// --calls 0 runs until SIGTERM/SIGINT (then the calls in flight finish). --rate spreads the calls
// evenly at R per second over all of them (0: as fast as the C concurrent calls go). --delay-ms
// asks the server to wait before answering (calls stay in flight longer).
// Output:
//   --each         one readable line per call: "call 7 -> node-b  OK  1.3 ms"
//   --stream       one line per call for programs:
//                  "call SEQ START_EPOCH END_EPOCH SERVER_ID|- STATUS_CODE"
//   (always)       a summary at the end: "server ID N" per answering server, "status CODE N" per
//                  gRPC status (NAME in the readable form), "ok N", "failed N";
//   --report-json  the summary as one JSON object instead:
//                  {"ok":N,"failed":N,"servers":{"ID":N},"status":{"CODE":N}}
// Exit status 0 when every call succeeded, 1 otherwise, 2 on bad arguments.
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "hello.grpc.pb.h"

namespace {

struct options {
  std::string target;
  long calls = 30;
  int concurrency = 1;
  double rate = 0;
  int deadline_ms = 5000;
  int delay_ms = 0;
  std::string name = "world";
  bool each = false;
  bool stream = false;
  bool json = false;
};

const char* code_name(int code) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? names[code] : "?";
}

double epoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

class tally {
 public:
  void add(long seq, std::chrono::system_clock::time_point start,
           std::chrono::system_clock::time_point end, const std::string& server,
           const grpc::Status& s, const std::string& detail, const options& o) {
    std::lock_guard<std::mutex> lock(m_);
    if (!server.empty()) ++servers_[server];
    ++statuses_[s.error_code()];
    (s.ok() ? ok_ : failed_)++;
    if (o.stream) {
      std::printf("call %ld %.6f %.6f %s %d\n", seq, epoch(start), epoch(end),
                  server.empty() ? "-" : server.c_str(), static_cast<int>(s.error_code()));
      std::fflush(stdout);
    }
    if (o.each) {
      const double ms = std::chrono::duration<double, std::milli>(end - start).count();
      std::printf("call %3ld -> %-14s %-12s %7.1f ms%s%s\n", seq, server.empty() ? "-" : server.c_str(),
                  code_name(s.error_code()), ms, detail.empty() ? "" : "  ", detail.c_str());
      std::fflush(stdout);
    }
  }

  int report(const options& o) {
    std::lock_guard<std::mutex> lock(m_);
    if (o.json) {
      std::string out = "{\"ok\":" + std::to_string(ok_) + ",\"failed\":" + std::to_string(failed_) +
                        ",\"servers\":{";
      bool first = true;
      for (auto& [id, n] : servers_) {
        out += (first ? "" : ",") + json_string(id) + ":" + std::to_string(n);
        first = false;
      }
      out += "},\"status\":{";
      first = true;
      for (auto& [code, n] : statuses_) {
        out += (first ? "\"" : ",\"") + std::to_string(code) + "\":" + std::to_string(n);
        first = false;
      }
      std::cout << out << "}}" << std::endl;
    } else {
      for (auto& [id, n] : servers_) std::cout << "server " << id << " " << n << "\n";
      for (auto& [code, n] : statuses_)
        std::cout << "status " << code << " " << code_name(code) << " " << n << "\n";
      std::cout << "ok " << ok_ << "\nfailed " << failed_ << std::endl;
    }
    return failed_ == 0 ? 0 : 1;
  }

 private:
  std::mutex m_;
  std::map<std::string, long> servers_;
  std::map<int, long> statuses_;
  long ok_ = 0, failed_ = 0;
};

std::atomic<bool> stopping{false};

void one_call(long seq, const options& o, hello::Hello::Stub& stub, tally& t) {
  grpc::ClientContext ctx;
  if (o.deadline_ms > 0)
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(o.deadline_ms));
  hello::HelloRequest req;
  req.set_name(o.name);
  req.set_delay_ms(o.delay_ms);
  hello::HelloResponse resp;
  const auto start = std::chrono::system_clock::now();
  grpc::Status status = stub.SayHello(&ctx, req, &resp);
  const auto end = std::chrono::system_clock::now();
  std::string server, detail;
  if (status.ok()) {
    server = resp.server_id();
    if (resp.message() != "Hello, " + o.name + "! from " + server) {
      status = grpc::Status(grpc::StatusCode::DATA_LOSS, "unexpected message");
      detail = "unexpected message '" + resp.message() + "'";
    }
  } else {
    detail = status.error_message();
  }
  t.add(seq, start, end, server, status, detail, o);
}

int usage() {
  std::cerr << "usage: sluice-hello-cluster-client --target HOST:PORT [--calls N (0: until "
               "SIGTERM)] [--concurrency C] [--rate CALLS_PER_SECOND] [--deadline-ms D] "
               "[--delay-ms D (the server waits D ms)] [--name NAME] [--each] [--stream] [--report-json]\n";
  return 2;
}

bool to_long(const char* s, long lo, long hi, long& out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi) return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    long n = 0;
    if (a == "--each") o.each = true;
    else if (a == "--stream") o.stream = true;
    else if (a == "--report-json") o.json = true;
    else if (a == "--target" && (v = next())) o.target = v;
    else if (a == "--calls" && (v = next()) && to_long(v, 0, 1000000000L, n)) o.calls = n;
    else if (a == "--concurrency" && (v = next()) && to_long(v, 1, 1000, n)) o.concurrency = static_cast<int>(n);
    else if (a == "--rate" && (v = next()) && to_long(v, 0, 1000000, n)) o.rate = static_cast<double>(n);
    else if (a == "--deadline-ms" && (v = next()) && to_long(v, 0, 3600000, n)) o.deadline_ms = static_cast<int>(n);
    else if (a == "--delay-ms" && (v = next()) && to_long(v, 0, 600000, n)) o.delay_ms = static_cast<int>(n);
    else if (a == "--name" && (v = next())) o.name = v;
    else return usage();
  }
  if (o.target.empty()) return usage();

  // SIGTERM/SIGINT: no new calls; the ones in flight finish, then the summary is printed.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    stopping = true;
  }).detach();

  // One channel: every call goes over the same HTTP/2 connection to sluice, which balances
  // each call on its own.
  auto channel = grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials());
  auto stub = hello::Hello::NewStub(channel);
  tally t;
  std::atomic<long> next_call{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < o.concurrency; ++i)
    threads.emplace_back([&] {
      for (;;) {
        const long seq = next_call.fetch_add(1);
        if (stopping || (o.calls > 0 && seq >= o.calls)) return;
        if (o.rate > 0) {
          // Call `seq` starts at t0 + seq / rate; sleep in short steps to notice a stop.
          const auto due = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(static_cast<double>(seq) / o.rate));
          while (!stopping && std::chrono::steady_clock::now() < due)
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
                due - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
          if (stopping) return;
        }
        one_call(seq + 1, o, *stub, t);
      }
    });
  for (auto& th : threads) th.join();
  return t.report(o);
}
