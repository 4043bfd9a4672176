// Load tool for tests/bench/tcp.sh: an upstream server and two clients, plain POSIX + epoll.
//
//   tcpbench serve                       prints the port it listens on (127.0.0.1), then serves:
//                                        'D' + 8-byte big-endian N: sends N bytes, then closes;
//                                        'P': answers 'p', then closes.
//   tcpbench download PORT BYTES         one connection, reads BYTES; prints "SECONDS GIB_PER_S"
//   tcpbench rate PORT SECONDS CONC      short connections (connect, 'P', 'p', EOF, close), CONC
//                                        at once; prints "CONNS_PER_S ERRORS"
//
// Built by tcp.sh with `g++ -O2`; not part of the CMake build.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tcpbench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

void nonblock(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// ---- server -------------------------------------------------------------------------------------

struct conn_state {
  std::uint8_t hdr[9];
  std::size_t hdr_len = 0;
  std::uint64_t to_send = 0;
  bool sending = false;
};

int serve() {
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = loopback(0);
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
  if (::listen(ls, 4096) != 0) die("listen");
  socklen_t len = sizeof a;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  std::printf("%d\n", ntohs(a.sin_port));
  std::fflush(stdout);
  nonblock(ls);
  int ep = ::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = ls;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  std::unordered_map<int, conn_state> conns;
  std::vector<char> payload(1 << 20, 'x');
  epoll_event events[256];
  auto close_conn = [&](int fd) {
    ::close(fd);
    conns.erase(fd);
  };
  for (;;) {
    int n = ::epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int c = ::accept4(ls, nullptr, nullptr, SOCK_NONBLOCK);
          if (c < 0) break;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conns[c] = {};
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
          cev.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      conn_state& st = it->second;
      bool done = false;
      if (!st.sending) {
        for (;;) {
          ssize_t k = ::read(fd, st.hdr + st.hdr_len, (st.hdr_len == 0 ? 1 : 9) - st.hdr_len);
          if (k == 0) { done = true; break; }
          if (k < 0) { if (errno != EAGAIN) done = true; break; }
          st.hdr_len += static_cast<std::size_t>(k);
          if (st.hdr[0] == 'P') {
            (void)!::write(fd, "p", 1);
            done = true;
            break;
          }
          if (st.hdr[0] != 'D') { done = true; break; }
          if (st.hdr_len == 9) {
            std::uint64_t v = 0;
            for (int b = 1; b < 9; ++b) v = (v << 8) | st.hdr[b];
            st.to_send = v;
            st.sending = true;
            break;
          }
        }
      }
      if (!done && st.sending) {
        while (st.to_send > 0) {
          std::size_t chunk = st.to_send < payload.size() ? st.to_send : payload.size();
          ssize_t k = ::send(fd, payload.data(), chunk, MSG_NOSIGNAL);
          if (k < 0) {
            if (errno != EAGAIN) done = true;
            break;
          }
          st.to_send -= static_cast<std::uint64_t>(k);
        }
        if (st.to_send == 0) done = true;
      }
      if (done) close_conn(fd);
    }
  }
}

// ---- clients ------------------------------------------------------------------------------------

int download(int port, std::uint64_t bytes) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loopback(port);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  std::uint8_t hdr[9] = {'D'};
  for (int b = 0; b < 8; ++b) hdr[1 + b] = static_cast<std::uint8_t>(bytes >> (56 - 8 * b));
  const auto t0 = steady::now();
  if (::write(s, hdr, sizeof hdr) != sizeof hdr) die("write");
  std::vector<char> buf(1 << 20);
  std::uint64_t got = 0;
  for (;;) {
    ssize_t k = ::read(s, buf.data(), buf.size());
    if (k < 0) die("read");
    if (k == 0) break;
    got += static_cast<std::uint64_t>(k);
  }
  const double secs = std::chrono::duration<double>(steady::now() - t0).count();
  ::close(s);
  if (got != bytes) {
    std::fprintf(stderr, "tcpbench: got %llu of %llu bytes\n", static_cast<unsigned long long>(got),
                 static_cast<unsigned long long>(bytes));
    return 1;
  }
  std::printf("%.3f %.3f\n", secs, static_cast<double>(bytes) / secs / (1 << 30));
  return 0;
}

int rate(int port, double seconds, int concurrency) {
  int ep = ::epoll_create1(0);
  auto a = loopback(port);
  std::uint64_t done = 0, errors = 0;
  const auto t0 = steady::now();
  const auto end = t0 + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
  bool stopping = false;
  int open = 0;
  std::unordered_map<int, int> phase;  // 0 connecting, 1 waiting for 'p' and EOF
  auto start_one = [&] {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0) die("socket");
    int r = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (r != 0 && errno != EINPROGRESS) {
      ++errors;
      ::close(s);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.fd = s;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    phase[s] = 0;
    ++open;
  };
  for (int i = 0; i < concurrency; ++i) start_one();
  epoll_event events[512];
  char buf[64];
  while (open > 0) {
    int n = ::epoll_wait(ep, events, 512, 1000);
    if (steady::now() >= end) stopping = true;
    for (int i = 0; i < n; ++i) {
      int s = events[i].data.fd;
      bool finished = false, failed = false;
      if (phase[s] == 0) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || ::write(s, "P", 1) != 1) {
          failed = true;
        } else {
          phase[s] = 1;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = s;
          ::epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
        }
      } else {
        for (;;) {
          ssize_t k = ::read(s, buf, sizeof buf);
          if (k > 0) {
            if (buf[0] != 'p') failed = true;
            continue;
          }
          if (k == 0) finished = true;
          else if (errno != EAGAIN) failed = true;
          break;
        }
      }
      if (finished || failed) {
        if (failed) ++errors; else ++done;
        ::close(s);
        phase.erase(s);
        --open;
        if (!stopping) start_one();
      }
    }
  }
  const double secs = std::chrono::duration<double>(steady::now() - t0).count();
  std::printf("%.0f %llu\n", static_cast<double>(done) / secs, static_cast<unsigned long long>(errors));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "serve" && argc == 2) return serve();
  if (mode == "download" && argc == 4) return download(std::atoi(argv[2]), std::strtoull(argv[3], nullptr, 10));
  if (mode == "rate" && argc == 5) return rate(std::atoi(argv[2]), std::atof(argv[3]), std::atoi(argv[4]));
  std::fprintf(stderr, "usage: tcpbench serve | download PORT BYTES | rate PORT SECONDS CONCURRENCY\n");
  return 2;
}
