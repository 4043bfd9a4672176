#include "net/runtime.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>
#include <thread>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/detail/socket_option.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "net/acceptor.hpp"
#include "sluice/log/log.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {

tcp::endpoint to_endpoint(const core::address& a, std::uint16_t port_override) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  if (port_override != 0) ep.port(port_override);
  return ep;
}

}  // namespace

struct runtime::impl {
  std::unique_ptr<asio::signal_set> stop_signals, other_signals;
  std::mutex mutex;  // guards acceptors: listen/unlisten (control) vs. drain (workers)
  std::vector<std::vector<std::shared_ptr<acceptor>>> acceptors;  // [worker][listener]
  std::atomic<bool> draining{false};
};

runtime::runtime(unsigned workers) : impl_(std::make_unique<impl>()) {
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  // One thread runs each worker context, and every socket of a worker is used only on that
  // thread (other threads post to it), so the reactor's per-socket lock is dropped: it cost a
  // mutex lock/unlock pair per I/O operation. The scheduler and registration stay locked, so
  // `post` from any thread and creating sockets before the workers start remain safe.
  for (unsigned i = 0; i < workers; ++i)
    ios_.push_back(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
  impl_->acceptors.resize(workers);
  // Signals are caught from here on: one that arrives before run() (say, SIGTERM right after
  // READY=1) waits in the set instead of killing the process with its default action.
  impl_->stop_signals =
      std::make_unique<asio::signal_set>(control_, SIGTERM, SIGINT, SIGQUIT);
  impl_->other_signals = std::make_unique<asio::signal_set>(control_, SIGHUP, SIGUSR1);
}

runtime::~runtime() {
  // Destroying the signal sets gives TERM, INT, QUIT, HUP and USR1 back their default action,
  // which terminates the process. Whatever part of the exit is left (the rest of the teardown,
  // and under a sanitizer its leak check) is not worth dying for: a second SIGTERM from a
  // supervisor that arrives now is ignored, and the process exits with its own status.
  // Blocked on this thread meanwhile, so the moment between the two cannot kill it either.
  sigset_t set, old;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  impl_->stop_signals.reset();
  impl_->other_signals.reset();
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1}) ::signal(sig, SIG_IGN);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);  // what arrived meanwhile is now ignored
}

namespace {
// Options set on a listening socket, which Linux copies to every socket it accepts (one
// setsockopt(2) per listener instead of one per connection). Best effort: errors ignored.
// - TCP_NODELAY: HTTP and L4 connections alike send what they have at once.
// - TCP_INQ (Linux 4.18+): a recvmsg(2) given room for control messages learns how many bytes
//   (and whether a FIN) remain queued, which lets the reads of src/net/relay_read.hpp (HTTP,
//   HTTP/2 and L4 alike) skip a read bound to return EAGAIN, and the L4 relay send a last
//   answer with its FIN. Reads without a control buffer (TLS) are unaffected.
void set_inherited_options(tcp::acceptor& acc) {
  int one = 1;
  ::setsockopt(acc.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef TCP_INQ
  ::setsockopt(acc.native_handle(), IPPROTO_TCP, TCP_INQ, &one, sizeof one);
#endif
}
}  // namespace

std::uint16_t runtime::listen(const listen_spec& spec) {
  // Every socket is ready before any starts accepting, so a failure leaves nothing behind.
  std::vector<std::pair<unsigned, tcp::acceptor>> made;
  std::uint16_t port = spec.address.port();
  // Inherited sockets (binary upgrade) first, spread over the workers: with fewer workers than
  // sockets some workers accept on several, with more the others bind below.
  const auto& inherited = spec.inherited_fds;
  for (std::size_t i = 0; i < inherited.size(); ++i) {
    const unsigned w = static_cast<unsigned>(i % workers());
    tcp::acceptor acc(*ios_[w]);
    boost::system::error_code ec;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(inherited[i], reinterpret_cast<sockaddr*>(&ss), &len) != 0)
      ec.assign(errno, boost::system::system_category());
    else if (ss.ss_family != spec.address.storage.ss_family)
      ec = asio::error::address_family_not_supported;
    else
      acc.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), inherited[i], ec);
    if (ec) {
      // The failed one and the rest are still ours to close; earlier ones belong to `made`.
      for (std::size_t j = i; j < inherited.size(); ++j) ::close(inherited[j]);
      throw std::system_error(ec.value(), std::generic_category(),
                              "listener " + spec.name + ": cannot use the inherited socket for " +
                                  spec.address.text);
    }
    port = acc.local_endpoint().port();
    set_inherited_options(acc);
    made.emplace_back(w, std::move(acc));
  }
  for (unsigned w = static_cast<unsigned>(made.size()); w < workers(); ++w) {
    auto ep = to_endpoint(spec.address, port);
    tcp::acceptor acc(*ios_[w]);
    boost::system::error_code ec;
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc.set_option(reuse_port(true), ec);
    if (!ec && ep.protocol() == tcp::v6()) acc.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) set_inherited_options(acc);
    if (ec) {
      throw std::system_error(ec.value(), std::generic_category(),
                              "listener " + spec.name + ": cannot listen on " + spec.address.text);
    }
    // Port 0: the first worker's bind chooses; the others join that port.
    if (port == 0) port = acc.local_endpoint().port();
    made.emplace_back(w, std::move(acc));
  }
  auto share = make_listener_share(spec, ios_);
  for (auto& [w, acc] : made) {
    auto loop = make_acceptor(*ios_[w], w, std::move(acc), share);
    {
      std::lock_guard lock(impl_->mutex);
      impl_->acceptors[w].push_back(loop);
    }
    asio::post(*ios_[w], [loop] { loop->start(); });
  }
  return port;
}

std::vector<listener_fds> runtime::listening_fds() const {
  std::vector<listener_fds> out;
  std::lock_guard lock(impl_->mutex);
  if (impl_->draining.load()) return out;
  for (const auto& per_worker : impl_->acceptors) {
    for (const auto& a : per_worker) {
      const int fd = a->fd();
      if (fd < 0) continue;
      auto it = std::find_if(out.begin(), out.end(),
                             [&](const listener_fds& l) { return l.name == a->name(); });
      if (it == out.end()) it = out.insert(out.end(), listener_fds{a->name(), {}});
      it->fds.push_back(fd);
    }
  }
  return out;
}

bool runtime::draining() const noexcept { return impl_->draining.load(); }

void runtime::unlisten(const std::string& name) {
  for (unsigned w = 0; w < workers(); ++w) {
    std::vector<std::shared_ptr<acceptor>> gone;
    {
      std::lock_guard lock(impl_->mutex);
      auto& v = impl_->acceptors[w];
      for (auto it = v.begin(); it != v.end();) {
        if ((*it)->name() == name) {
          gone.push_back(std::move(*it));
          it = v.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (!gone.empty())
      asio::post(*ios_[w], [gone = std::move(gone)] {
        for (auto& a : gone) a->close();
      });
  }
}

void runtime::stop() {
  asio::post(control_, [this] {
    if (impl_->draining.exchange(true)) return;
    SLUICE_LOG(info, "draining: stopped accepting, waiting for in-flight requests");
    for (unsigned w = 0; w < workers(); ++w) {
      asio::post(*ios_[w], [this, w] {
        std::vector<std::shared_ptr<acceptor>> list;
        {
          std::lock_guard lock(impl_->mutex);
          list = impl_->acceptors[w];
        }
        for (auto& a : list) a->close();
      });
    }
    if (on_drain_) on_drain_();
  });
}

int runtime::run(std::chrono::milliseconds drain_timeout) {
  auto control_guard = asio::make_work_guard(control_);
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& io : ios_) guards.push_back(asio::make_work_guard(*io));

  auto& stop_signals = *impl_->stop_signals;
  auto& other_signals = *impl_->other_signals;
  std::function<void(boost::system::error_code, int)> on_other =
      [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP && on_sighup_) on_sighup_();
        if (sig == SIGUSR1 && on_sigusr1_) on_sigusr1_();
        other_signals.async_wait(on_other);
      };
  other_signals.async_wait(on_other);

  asio::steady_timer poll(control_);
  std::chrono::steady_clock::time_point deadline{};
  std::function<void()> wait_drained = [&] {
    std::size_t active = active_ ? active_() : 0;
    if (active == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (active != 0)
        SLUICE_LOG(warn, "drain timeout: closing " << active << " connection(s) still open");
      else
        SLUICE_LOG(info, "drained, exiting");
      for (auto& g : guards) g.reset();
      for (auto& io : ios_) io->stop();
      control_guard.reset();
      other_signals.cancel();
      // Control-plane listeners and timers (admin accept, probes, watches) may still hold
      // work; once drained nothing on the control thread matters any more.
      control_.stop();
      return;
    }
    poll.expires_after(std::chrono::milliseconds(20));
    poll.async_wait([&](boost::system::error_code ec) {
      if (!ec) wait_drained();
    });
  };
  stop_signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    SLUICE_LOG(info, "received signal " << sig << ", draining");
    stop();
  });
  // Whoever called stop() (a signal, the admin API, a test), the drain is watched from here.
  std::function<void()> watch_stop = [&] {
    if (impl_->draining.load() && deadline == std::chrono::steady_clock::time_point{}) {
      stop_signals.cancel();
      deadline = std::chrono::steady_clock::now() + drain_timeout;
      wait_drained();
      return;
    }
    if (deadline != std::chrono::steady_clock::time_point{}) return;
    poll.expires_after(std::chrono::milliseconds(100));
    poll.async_wait([&](boost::system::error_code ec) {
      if (!ec) watch_stop();
    });
  };
  watch_stop();

  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers(); ++w) {
    threads.emplace_back([this, w] {
      for (;;) {
        try {
          ios_[w]->run();
          return;
        } catch (const std::exception& e) {
          // A bug in one session must not take the worker down with it.
          SLUICE_LOG(error, "worker " << w << ": unhandled exception: " << e.what());
        }
      }
    });
  }
  for (;;) {
    try {
      control_.run();
      break;
    } catch (const std::exception& e) {
      SLUICE_LOG(error, "control: unhandled exception: " << e.what());
    }
  }
  for (auto& t : threads) t.join();
  return 0;
}

}  // namespace sluice::net
