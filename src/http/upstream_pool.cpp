#include "upstream_pool.hpp"

#include <algorithm>

#include "net/relay_read.hpp"
#include "sluice/core/clock.hpp"

namespace sluice::http {

std::shared_ptr<upstream_conn> upstream_pool::take(core::backend* b) {
  auto it = idle_.find(b);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  std::shared_ptr<upstream_conn> c;
  while (!list.empty()) {
    c = std::move(list.back());
    list.pop_back();
    // Readable since it was pooled: closed by the upstream (or junk). Dropped.
    if (!c->quiet || net::expects_nothing_to_read(c->socket)) break;
    boost::system::error_code ec;
    c->pooled = false;
    c->socket.close(ec);
    c.reset();
  }
  if (list.empty()) idle_.erase(it);
  if (!c) return nullptr;
  c->pooled = false;
  ++c->idle_epoch;
  if (c->watched) {
    c->watched = false;
    boost::system::error_code ec;
    c->socket.cancel(ec);  // ends the readability watch; its completion sees a new epoch
  }
  c->keep.reset();
  return c;
}

void upstream_pool::put(std::shared_ptr<upstream_conn> c, std::uint32_t max_idle,
                        std::chrono::milliseconds idle_timeout, bool quiet) {
  if (closed_ || max_idle == 0 || !c->socket.is_open()) return;  // c closes on destruction
  auto& list = idle_[c->backend];
  if (list.size() >= max_idle) {
    // Keep the newest: drop the oldest idle one.
    boost::system::error_code ec;
    list.front()->socket.close(ec);
    list.erase(list.begin());
  }
  c->pooled = true;
  c->quiet = quiet;
  ++c->idle_epoch;
  c->idle_since = core::coarse_now();
  c->idle_timeout = idle_timeout;
  c->buffer.clear();
  list.push_back(std::move(c));
}

void upstream_pool::watch(const std::shared_ptr<upstream_conn>& c) {
  c->watched = true;
  std::weak_ptr<upstream_conn> weak = c;
  auto epoch = c->idle_epoch;
  c->socket.async_wait(boost::asio::socket_base::wait_read,
                       [this, weak, epoch](boost::system::error_code ec) {
                         auto c = weak.lock();
                         if (!c || ec || !c->pooled || c->idle_epoch != epoch) return;
                         // Readable while idle: the upstream closed it or sent junk.
                         remove(c.get());
                       });
}

void upstream_pool::remove(upstream_conn* c) {
  auto it = idle_.find(c->backend);
  if (it == idle_.end()) return;
  auto& list = it->second;
  auto pos = std::find_if(list.begin(), list.end(), [c](auto& p) { return p.get() == c; });
  if (pos == list.end()) return;
  boost::system::error_code ec;
  (*pos)->pooled = false;
  (*pos)->socket.close(ec);
  list.erase(pos);
  if (list.empty()) idle_.erase(it);
}

void upstream_pool::sweep(std::chrono::steady_clock::time_point now) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    list.erase(std::remove_if(list.begin(), list.end(),
                              [this, now](auto& c) {
                                auto idle = now - c->idle_since;
                                if (idle < c->idle_timeout) {
                                  if (!c->watched && idle >= watch_after) watch(c);
                                  return false;
                                }
                                boost::system::error_code ec;
                                c->pooled = false;
                                c->socket.close(ec);
                                return true;
                              }),
               list.end());
    if (list.empty())
      it = idle_.erase(it);
    else
      ++it;
  }
}

void upstream_pool::clear(bool close_pool) {
  if (close_pool) closed_ = true;
  for (auto& [b, list] : idle_) {
    for (auto& c : list) {
      boost::system::error_code ec;
      c->pooled = false;
      c->socket.close(ec);
    }
  }
  idle_.clear();
}

std::size_t upstream_pool::idle() const noexcept {
  std::size_t n = 0;
  for (auto& [b, list] : idle_) n += list.size();
  return n;
}

}  // namespace sluice::http
