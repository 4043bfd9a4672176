#include "net/runtime.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "sluice/log/log.hpp"

namespace sluice::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {

// One acceptor on one worker. Accepts with a callback loop (no coroutine frame per accept);
// on resource exhaustion (EMFILE, ENFILE, ENOBUFS) it pauses briefly instead of spinning.
class acceptor_loop : public std::enable_shared_from_this<acceptor_loop> {
 public:
  acceptor_loop(asio::io_context& io, unsigned worker, tcp::acceptor acceptor,
                const listen_spec& spec)
      : worker_(worker), acceptor_(std::move(acceptor)), backoff_(io), spec_(spec) {}

  void start() { accept(); }
  void close() {
    boost::system::error_code ignored;
    closed_ = true;
    acceptor_.close(ignored);
    backoff_.cancel();
  }

 private:
  void accept() {
    acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec,
                                                       tcp::socket socket) {
      if (self->closed_) return;
      if (!ec) {
        self->spec_.on_accept(self->worker_, std::move(socket));
        self->accept();
        return;
      }
      if (ec == asio::error::operation_aborted) return;
      SLUICE_LOG(warn, "accept on listener " << self->spec_.name << ": " << ec.message());
      self->backoff_.expires_after(std::chrono::milliseconds(50));
      self->backoff_.async_wait([self](boost::system::error_code wec) {
        if (!wec && !self->closed_) self->accept();
      });
    });
  }

  unsigned worker_;
  tcp::acceptor acceptor_;
  asio::steady_timer backoff_;
  listen_spec spec_;
  bool closed_ = false;
};

tcp::endpoint to_endpoint(const core::address& a, std::uint16_t port_override) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.length);
  ep.resize(a.length);
  if (port_override != 0) ep.port(port_override);
  return ep;
}

}  // namespace

struct runtime::impl {
  std::vector<std::vector<std::shared_ptr<acceptor_loop>>> acceptors;  // [worker][listener]
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
}

runtime::~runtime() = default;

std::uint16_t runtime::listen(const listen_spec& spec) {
  std::uint16_t port = spec.address.port();
  for (unsigned w = 0; w < workers(); ++w) {
    auto ep = to_endpoint(spec.address, port);
    tcp::acceptor acc(*ios_[w]);
    boost::system::error_code ec;
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc.set_option(reuse_port(true), ec);
    if (!ec && ep.protocol() == tcp::v6()) acc.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw std::system_error(ec.value(), std::generic_category(),
                              "listener " + spec.name + ": cannot listen on " + spec.address.text);
    }
    // Port 0: the first worker's bind chooses; the others join that port.
    if (port == 0) port = acc.local_endpoint().port();
    auto loop = std::make_shared<acceptor_loop>(*ios_[w], w, std::move(acc), spec);
    impl_->acceptors[w].push_back(loop);
    asio::post(*ios_[w], [loop] { loop->start(); });
  }
  return port;
}

void runtime::stop() {
  asio::post(control_, [this] {
    if (impl_->draining.exchange(true)) return;
    SLUICE_LOG(info, "draining: stopped accepting, waiting for in-flight requests");
    for (unsigned w = 0; w < workers(); ++w) {
      asio::post(*ios_[w], [this, w] {
        for (auto& a : impl_->acceptors[w]) a->close();
      });
    }
    if (on_drain_) on_drain_();
  });
}

int runtime::run(std::chrono::milliseconds drain_timeout) {
  auto control_guard = asio::make_work_guard(control_);
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& io : ios_) guards.push_back(asio::make_work_guard(*io));

  asio::signal_set stop_signals(control_, SIGTERM, SIGINT, SIGQUIT);
  asio::signal_set other_signals(control_, SIGHUP, SIGUSR1);
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
