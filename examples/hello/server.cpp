// sluice-hello-server: the Hello gRPC service (and grpc.health.v1.Health) for demos and tests.
//   sluice-hello-server [--listen 127.0.0.1:0] [--id NAME] [--not-serving]
//                       [--tls-cert FILE --tls-key FILE]
// With --tls-cert/--tls-key it serves gRPC over TLS (HTTP/2 with ALPN h2) instead of h2c.
// Prints "listening HOST:PORT" first on stdout. SIGUSR1 flips health to NOT_SERVING, SIGUSR2
// back to SERVING; SIGTERM/SIGINT stop it.
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "hello.grpc.pb.h"

namespace {

std::string server_id = "hello";

void pause_ms(int ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 600000)));
}

std::string greeting(const std::string& name) {
  return "Hello, " + name + "! from " + server_id;
}

class hello_service final : public hello::Hello::Service {
  grpc::Status SayHello(grpc::ServerContext* ctx, const hello::HelloRequest* req,
                        hello::HelloResponse* resp) override {
    // The names of the request's metadata fields, so that a proxy's forwarding can be seen.
    std::set<std::string> names;
    for (const auto& [k, v] : ctx->client_metadata()) names.emplace(k.data(), k.size());
    std::string seen;
    for (const auto& n : names) seen += (seen.empty() ? "" : ",") + n;
    ctx->AddInitialMetadata("x-seen-fields", seen);
    pause_ms(req->delay_ms());
    resp->set_message(greeting(req->name()));
    resp->set_server_id(server_id);
    return grpc::Status::OK;
  }
};

class stream_service final : public hello::HelloStream::Service {
  grpc::Status ServerStream(grpc::ServerContext* ctx, const hello::HelloRequest* req,
                            grpc::ServerWriter<hello::HelloResponse>* w) override {
    for (int i = 0; i < req->count(); ++i) {
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
      pause_ms(req->delay_ms());
      hello::HelloResponse r;
      r.set_message(greeting(req->name()));
      r.set_server_id(server_id);
      r.set_seq(i);
      if (!w->Write(r)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status ClientStream(grpc::ServerContext*, grpc::ServerReader<hello::HelloRequest>* r,
                            hello::HelloResponse* resp) override {
    hello::HelloRequest req;
    std::string names;
    int n = 0;
    while (r->Read(&req)) {
      if (n++) names += ",";
      names += req.name();
    }
    resp->set_message(greeting(names));
    resp->set_server_id(server_id);
    resp->set_seq(n);
    return grpc::Status::OK;
  }

  grpc::Status Bidi(grpc::ServerContext*,
                    grpc::ServerReaderWriter<hello::HelloResponse, hello::HelloRequest>* s) override {
    hello::HelloRequest req;
    int i = 0;
    while (s->Read(&req)) {
      pause_ms(req.delay_ms());
      hello::HelloResponse r;
      r.set_message(greeting(req.name()));
      r.set_server_id(server_id);
      r.set_seq(i++);
      if (!s->Write(r)) break;
    }
    return grpc::Status::OK;
  }
};

int usage() {
  std::cerr << "usage: sluice-hello-server [--listen HOST:PORT] [--id NAME] [--not-serving]\n"
               "                           [--tls-cert FILE --tls-key FILE]\n";
  return 2;
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  bool serving = true;
  std::string tls_cert, tls_key;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) listen = argv[++i];
    else if (a == "--id" && i + 1 < argc) server_id = argv[++i];
    else if (a == "--not-serving") serving = false;
    else if (a == "--tls-cert" && i + 1 < argc) tls_cert = argv[++i];
    else if (a == "--tls-key" && i + 1 < argc) tls_key = argv[++i];
    else return usage();
  }
  if (tls_cert.empty() != tls_key.empty()) return usage();
  // Signals are taken by one thread with sigwait; block them everywhere else first (before
  // anything of gRPC's runs: making credentials may already start its threads).
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!tls_cert.empty()) {
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!read_file(tls_cert, pair.cert_chain) || !read_file(tls_key, pair.private_key)) {
      std::cerr << "sluice-hello-server: cannot read " << tls_cert << " or " << tls_key << "\n";
      return 1;
    }
    grpc::SslServerCredentialsOptions opts;
    opts.pem_key_cert_pairs.push_back(std::move(pair));
    creds = grpc::SslServerCredentials(opts);
  }

  grpc::EnableDefaultHealthCheckService(true);
  hello_service hello;
  stream_service streams;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, creds, &port);
  builder.RegisterService(&hello);
  builder.RegisterService(&streams);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "sluice-hello-server: cannot listen on " << listen << "\n";
    return 1;
  }
  auto* health = server->GetHealthCheckService();
  health->SetServingStatus(serving);
  auto host = listen.substr(0, listen.rfind(':'));
  std::cout << "listening " << host << ":" << port << std::endl;

  std::thread waiter([&] {
    for (;;) {
      int sig = 0;
      sigwait(&set, &sig);
      if (sig == SIGUSR1) health->SetServingStatus(false);
      else if (sig == SIGUSR2) health->SetServingStatus(true);
      else break;
    }
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  waiter.join();
  return 0;
}
