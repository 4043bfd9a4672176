// sluice-hello-cluster-server: the seed's Hello gRPC server, registering itself in etcd.
//   sluice-hello-cluster-server [--listen 127.0.0.1:0] [--etcd 127.0.0.1:2379] [--prefix /nodes/]
//                               [--ttl 5] [--id NAME] [--no-etcd]
// Serves hello.Hello/SayHello (answering with its id) and grpc.health.v1.Health. Registers the
// way the seed does: grants a lease of --ttl seconds, puts PREFIX+ID (ID: --id, default a random
// UUID) with the lease, and keeps the lease alive every TTL/3. The value is the JSON form sluice's
// etcd discovery reads: {"address":"HOST:PORT","weight":1,"protocol":"h2c"}. etcd is reached
// through its v3 JSON gateway (HTTP/1.1). When etcd is down the server keeps serving and retries;
// a lease that expired meanwhile is replaced by a new one (same key). SIGTERM/SIGINT delete the
// key, revoke the lease, then stop the server.
// Prints on stdout (one line each, flushed): "listening HOST:PORT", "registered KEY lease ID
// at EPOCH_SECONDS", "first-call at EPOCH_SECONDS", "unregistered KEY".
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "hello.grpc.pb.h"
#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_protocol.hpp"
#include "sluice/discovery/registration.hpp"

namespace {

namespace etcd = sluice::discovery::etcd;
using clock_type = std::chrono::steady_clock;

std::mutex out_mutex;

void say(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mutex);
  std::cout << line << std::endl;
}

void warn(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mutex);
  std::cerr << "hello-cluster-server: " << line << std::endl;
}

std::string epoch_now() {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%06lld", static_cast<long long>(us / 1000000),
                static_cast<long long>(us % 1000000));
  return buf;
}

std::string uuid_v4() {
  std::random_device rd;
  unsigned char b[16];
  for (auto& x : b) x = static_cast<unsigned char>(rd());
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += hex[b[i] >> 4];
    out += hex[b[i] & 15];
  }
  return out;
}

// ---- a blocking HTTP/1.1 POST to etcd's JSON gateway (one connection per call) ----------------

class gateway {
 public:
  explicit gateway(std::string endpoint) : endpoint_(std::move(endpoint)) {}

  // POSTs `body` to `target`; the answer's body in *out (any HTTP status: the gateway reports
  // errors as JSON bodies, which the etcd_protocol parsers recognise). False + *error on a
  // transport failure. Everything within `timeout`.
  bool post(const std::string& target, const std::string& body, std::string* out,
            std::string* error, std::chrono::milliseconds timeout) const {
    const auto deadline = clock_type::now() + timeout;
    const int fd = connect_to(deadline, error);
    if (fd < 0) return false;
    std::string req = "POST " + target + " HTTP/1.1\r\nHost: " + endpoint_ +
                      "\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    bool ok = send_all(fd, req, deadline, error);
    std::string raw;
    if (ok) ok = read_all(fd, raw, deadline, error);
    ::close(fd);
    if (!ok) return false;
    return parse_reply(raw, out, error);
  }

  const std::string& endpoint() const { return endpoint_; }

 private:
  static int remaining_ms(clock_type::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    return left.count() <= 0 ? 0 : static_cast<int>(left.count());
  }

  static bool wait_fd(int fd, short events, clock_type::time_point deadline, std::string* error) {
    for (;;) {
      pollfd p{fd, events, 0};
      const int n = ::poll(&p, 1, remaining_ms(deadline));
      if (n > 0) return true;
      if (n == 0) {
        *error = "timed out";
        return false;
      }
      if (errno != EINTR) {
        *error = std::string("poll: ") + std::strerror(errno);
        return false;
      }
    }
  }

  int connect_to(clock_type::time_point deadline, std::string* error) const {
    auto hp = sluice::core::split_host_port(endpoint_);
    if (!hp) {
      *error = "bad etcd address " + endpoint_;
      return -1;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string host(hp->host), port = std::to_string(hp->port);
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
      *error = "resolving " + endpoint_ + ": " + ::gai_strerror(rc);
      return -1;
    }
    int fd = -1;
    for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline, error)) {
        int so = 0;
        socklen_t len = sizeof so;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
        rc = so == 0 ? 0 : -1;
        if (so) *error = "connect to " + endpoint_ + ": " + std::strerror(so);
      } else if (rc != 0 && errno != EINPROGRESS) {
        *error = "connect to " + endpoint_ + ": " + std::strerror(errno);
      } else if (rc != 0) {
        *error = "connect to " + endpoint_ + ": " + *error;
      }
      if (rc != 0) {
        ::close(fd);
        fd = -1;
      }
    }
    ::freeaddrinfo(res);
    return fd;
  }

  static bool send_all(int fd, const std::string& data, clock_type::time_point deadline,
                       std::string* error) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!wait_fd(fd, POLLOUT, deadline, error)) return false;
      } else {
        *error = std::string("send: ") + std::strerror(errno);
        return false;
      }
    }
    return true;
  }

  static bool read_all(int fd, std::string& out, clock_type::time_point deadline, std::string* error) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > (1u << 20)) {
          *error = "answer larger than 1 MiB";
          return false;
        }
      } else if (n == 0) {
        return true;
      } else if (errno == EAGAIN || errno == EINTR) {
        if (!wait_fd(fd, POLLIN, deadline, error)) return false;
      } else {
        *error = std::string("recv: ") + std::strerror(errno);
        return false;
      }
    }
  }

  // Splits head and body; decodes a chunked body.
  static bool parse_reply(const std::string& raw, std::string* out, std::string* error) {
    const auto end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) {
      *error = "not an HTTP answer from etcd";
      return false;
    }
    std::string head = raw.substr(0, end);
    for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string body = raw.substr(end + 4);
    if (head.find("transfer-encoding: chunked") == std::string::npos) {
      *out = std::move(body);
      return true;
    }
    out->clear();
    std::size_t pos = 0;
    for (;;) {
      const auto eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      std::size_t size = 0;
      try {
        size = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
      } catch (const std::exception&) {
        break;
      }
      if (size == 0) return true;
      if (eol + 2 + size > body.size()) break;
      out->append(body, eol + 2, size);
      pos = eol + 2 + size + 2;
    }
    *error = "bad chunked answer from etcd";
    return false;
  }

  std::string endpoint_;
};

// ---- registration: lease + put + keep-alive, on its own thread -------------------------------

class registrar {
 public:
  registrar(std::string etcd_endpoint, std::string key, std::string value, std::int64_t ttl)
      : etcd_(std::move(etcd_endpoint)), key_(std::move(key)), value_(std::move(value)), ttl_(ttl) {}

  void start() { thread_ = std::thread([this] { run(); }); }

  // Stops the keep-alive loop, then deletes the key and revokes the lease (best effort).
  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (lease_ == 0) return;
    std::string body, err;
    using namespace std::chrono_literals;
    if (!etcd_.post("/v3/kv/deleterange", etcd::delete_request(key_), &body, &err, 2s)) {
      warn("cannot delete " + key_ + " (" + err + "); it goes when lease " + std::to_string(lease_) +
           " expires");
      return;
    }
    etcd_.post("/v3/lease/revoke", etcd::lease_id_request(lease_), &body, &err, 2s);
    say("unregistered " + key_);
  }

 private:
  using ms = std::chrono::milliseconds;

  void run() {
    const ms interval(std::max<std::int64_t>(300, ttl_ * 1000 / 3));
    const ms retry(std::min<std::int64_t>(1000, interval.count()));
    bool registered = register_key();
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(m_);
        if (cv_.wait_for(lock, registered ? interval : retry, [this] { return stopping_; })) return;
      }
      registered = registered ? keep_alive() : register_key();
    }
  }

  // Grants a lease and puts the key on it.
  bool register_key() {
    using namespace std::chrono_literals;
    std::string body, err;
    if (!etcd_.post("/v3/lease/grant", etcd::lease_grant_request(ttl_), &body, &err, 3s)) {
      complain("etcd at " + etcd_.endpoint() + " unreachable (" + err + "); still serving, retrying");
      return false;
    }
    auto id = etcd::parse_lease_grant_response(body, &err);
    if (!id) {
      complain("lease grant failed: " + err + "; retrying");
      return false;
    }
    if (!etcd_.post("/v3/kv/put", etcd::put_request(key_, value_, *id), &body, &err, 3s) ||
        !etcd::parse_header_revision(body, &err)) {
      complain("put " + key_ + " failed: " + err + "; retrying");
      etcd_.post("/v3/lease/revoke", etcd::lease_id_request(*id), &body, &err, 1s);
      return false;
    }
    lease_ = *id;
    complained_ = false;
    say("registered " + key_ + " lease " + std::to_string(lease_) + " at " + epoch_now());
    return true;
  }

  // True while the lease lives. A failed call keeps trying the same lease (etcd may only be
  // slow or briefly down); a lease etcd no longer knows (TTL 0) means registering again.
  bool keep_alive() {
    using namespace std::chrono_literals;
    std::string body, err;
    if (!etcd_.post("/v3/lease/keepalive", etcd::lease_id_request(lease_), &body, &err, 3s)) {
      complain("keep-alive failed (" + err + "); still serving, retrying");
      return true;
    }
    auto ttl = etcd::parse_keepalive_response(body, &err);
    if (!ttl) {
      complain("keep-alive failed: " + err + "; retrying");
      return true;
    }
    complained_ = false;
    if (*ttl > 0) return true;
    warn("lease " + std::to_string(lease_) + " expired; registering " + key_ + " again");
    lease_ = 0;
    return register_key();
  }

  // One warning per outage, not one per retry.
  void complain(const std::string& what) {
    if (!complained_) warn(what);
    complained_ = true;
  }

  gateway etcd_;
  std::string key_;
  std::string value_;
  std::int64_t ttl_;
  std::int64_t lease_ = 0;
  bool complained_ = false;
  std::mutex m_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// ---- the Hello service ------------------------------------------------------------------------

std::string server_id;
std::once_flag first_call;

class hello_service final : public hello::Hello::Service {
  grpc::Status SayHello(grpc::ServerContext*, const hello::HelloRequest* req,
                        hello::HelloResponse* resp) override {
    std::call_once(first_call, [] { say("first-call at " + epoch_now()); });
    if (req->delay_ms() > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(req->delay_ms(), 600000)));
    resp->set_message("Hello, " + req->name() + "! from " + server_id);
    resp->set_server_id(server_id);
    return grpc::Status::OK;
  }
};

constexpr const char* usage =
    "usage: sluice-hello-cluster-server [--listen HOST:PORT] [--etcd HOST:PORT] [--prefix /nodes/]\n"
    "                                   [--ttl SECONDS] [--id NAME] [--no-etcd]\n";

bool parse_ttl(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 6) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  out = std::stoll(s);
  return out >= 2 && out <= 3600;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  std::string etcd_endpoint = "127.0.0.1:2379";
  std::string prefix = "/nodes/";
  std::int64_t ttl = 5;
  bool use_etcd = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      return 0;
    }
    if (a == "--no-etcd") {
      use_etcd = false;
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "hello-cluster-server: " << a << " needs a value\n" << usage;
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--listen") {
      if (!sluice::core::split_host_port(v, true)) {
        std::cerr << "hello-cluster-server: --listen: expected HOST:PORT, got '" << v << "'\n";
        return 2;
      }
      listen = v;
    } else if (a == "--etcd") {
      if (v.find("://") != std::string::npos || !sluice::core::split_host_port(v)) {
        std::cerr << "hello-cluster-server: --etcd: expected HOST:PORT (no scheme), got '" << v << "'\n";
        return 2;
      }
      etcd_endpoint = v;
    } else if (a == "--prefix") {
      if (v.empty()) {
        std::cerr << "hello-cluster-server: --prefix must not be empty\n";
        return 2;
      }
      prefix = v;
    } else if (a == "--ttl") {
      if (!parse_ttl(v, ttl)) {
        std::cerr << "hello-cluster-server: --ttl: expected whole seconds 2-3600, got '" << v << "'\n";
        return 2;
      }
    } else if (a == "--id") {
      if (v.empty() || v.find('/') != std::string::npos) {
        std::cerr << "hello-cluster-server: --id must be non-empty, without '/'\n";
        return 2;
      }
      server_id = v;
    } else {
      std::cerr << "hello-cluster-server: unknown option " << a << "\n" << usage;
      return 2;
    }
  }
  const std::string key_id = server_id.empty() ? uuid_v4() : server_id;
  if (server_id.empty()) server_id = key_id;

  // Signals are taken by one thread with sigwait; block them everywhere else first.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  grpc::EnableDefaultHealthCheckService(true);
  hello_service hello;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&hello);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "hello-cluster-server: cannot listen on " << listen << "\n";
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";  // an address others can dial
  const std::string address = host + ":" + std::to_string(port);
  say("listening " + address + " id " + server_id);

  std::unique_ptr<registrar> reg;
  if (use_etcd) {
    sluice::discovery::registration r;
    r.address = address;
    r.protocol = "h2c";
    reg = std::make_unique<registrar>(etcd_endpoint, prefix + key_id,
                                      sluice::discovery::format_registration(r), ttl);
    reg->start();
  }

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    // Leave the cluster first, so the balancer stops sending before the server stops.
    if (reg) reg->stop();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  waiter.join();
  return 0;
}
