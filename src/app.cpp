// Wiring only: config → clusters → workers → listeners, and configuration reloads.
#include "app.hpp"

#include <exception>
#include <map>
#include <memory>

#include <unistd.h>

#include <boost/asio/post.hpp>

#include "admin/server.hpp"
#include "h2/proxy.hpp"
#include "http/proxy.hpp"
#include "l4/proxy.hpp"
#include "sluice/admin/status.hpp"
#include "sluice/config/diff.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/config/route_label.hpp"
#include "sluice/metrics/registry.hpp"
#include "net/runtime.hpp"
#include "net/sd_notify.hpp"
#include "net/handoff.hpp"
#include "net/tls_server.hpp"
#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_source.hpp"
#include "sluice/discovery/source_metrics.hpp"
#include "sluice/health/monitor.hpp"
#include "sluice/log/access_log.hpp"
#include "sluice/log/log.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::app {

namespace {

namespace asio = boost::asio;

std::vector<pool::endpoint> resolve_endpoints(const config::cluster& c,
                                              std::vector<std::string>* errors) {
  std::vector<pool::endpoint> out;
  for (const auto& e : c.endpoints) {
    std::string err;
    auto addr = core::resolve(e.address, &err);
    if (!addr) {
      if (errors) errors->push_back("cluster " + c.name + ": endpoint " + e.address + ": " + err);
      continue;
    }
    out.push_back({std::move(*addr), e.weight});
  }
  return out;
}

// "127.0.0.1:8080" / "[::1]:8080" for a bound listener (the configured port may have been 0).
std::string bound_text(const core::address& a, std::uint16_t port) {
  std::string host = a.host();
  if (a.storage.ss_family == AF_INET6) host = "[" + host + "]";
  return host + ':' + std::to_string(port);
}

bool same_cluster(const config::cluster& a, const config::cluster& b) {
  config::config x, y;
  x.clusters.push_back(a);
  y.clusters.push_back(b);
  return config::diff(x, y).empty();
}

// A listener keeps its sockets across a reload when its name, address and protocol stay.
bool same_socket(const config::listener& a, const config::listener& b) {
  return a.address == b.address && a.protocol == b.protocol;
}

// One configured cluster and the control-plane machinery that feeds it.
struct cluster_entry {
  std::shared_ptr<pool::cluster> cl;
  std::unique_ptr<health::monitor> monitor;
  std::unique_ptr<discovery::etcd_source> source;
  bool started = false;  // source started

  void stop() {
    if (source) source->stop();
    if (monitor) monitor->stop();
  }
};

// Per tcp listener: its newest state on each worker (element w touched only on worker w).
struct tcp_cell {
  explicit tcp_cell(unsigned workers) : per_worker(workers) {}
  std::vector<std::shared_ptr<const l4::listener_state>> per_worker;
};

struct listener_entry {
  config::listener cfg;      // as configured when its sockets were opened (address, protocol)
  std::string key;           // the runtime's name for its sockets
  std::size_t slot = 0;      // metrics slot
  std::uint16_t port = 0;    // bound port
  std::shared_ptr<tcp_cell> tcp;  // tcp listeners only
};

// Everything the running configuration is made of. Lives on, and is only touched from, the
// control thread (start-up happens before the threads run).
class instance {
 public:
  instance(net::runtime& rt, std::shared_ptr<log::access_log> access,
           std::shared_ptr<metrics::registry> registry)
      : rt_(rt), access_(std::move(access)), registry_(std::move(registry)) {
    for (unsigned w = 0; w < rt_.workers(); ++w) {
      http_workers_.push_back(http::make_worker_state(rt_.io(w), access_, registry_, w));
      l4_workers_.push_back(l4::make_worker_state(rt_.io(w), registry_, w));
    }
    registry_->set_backends([this](const metrics::backend_visitor& visit) {
      admin::backend_enumerator(cluster_list())(visit);
    });
  }

  ~instance() {
    for (auto& [name, e] : clusters_) e.stop();
  }

  const std::shared_ptr<const config::config>& config() const { return cfg_; }

  /// Makes `next` the running configuration. On failure nothing changed and `errors` says why.
  bool apply(std::shared_ptr<const config::config> next, std::vector<std::string>& errors) {
    auto problems = preflight(*next);
    if (!problems.empty()) {
      errors = std::move(problems);
      return false;
    }
    if (cfg_) warn_unapplied(*cfg_, *next);
    // TLS contexts read the certificate files now (a reload picks renewed ones up); a broken
    // file fails the apply before anything changed.
    std::map<const config::listener*, std::shared_ptr<const net::tls_server>> tls;
    for (const auto& l : next->listeners) {
      std::string terr;
      if (l.tls && !(tls[&l] = net::make_tls_server(l, &terr))) {
        errors.push_back(terr);
        return false;
      }
    }

    // 1. Clusters: unchanged ones are kept whole (health, discovery, counters); changed ones
    //    are rebuilt taking their predecessor's backends over; new ones are made.
    std::map<std::string, cluster_entry> clusters;
    std::vector<std::string> kept;
    for (const auto& c : next->clusters) {
      auto old = clusters_.find(c.name);
      if (old != clusters_.end() && same_cluster(old->second.cl->config(), c)) {
        kept.push_back(c.name);
        continue;  // moved over below, once nothing can fail any more
      }
      cluster_entry e;
      const pool::cluster* before = old != clusters_.end() ? old->second.cl.get() : nullptr;
      e.cl = std::make_shared<pool::cluster>(c, rt_.workers(), before);
      e.cl->set_metrics_slot(registry_->cluster_slot(c.name));
      // A discovered cluster keeps the backends it inherited until its source delivers.
      if (!c.discovery || !before) e.cl->update(resolve_endpoints(c, nullptr));
      if (c.discovery) {
        std::string derr;
        e.source = discovery::make_etcd_source(
            rt_.control(), c, [cl = e.cl](std::vector<pool::endpoint> eps) { cl->update(eps); },
            &derr);
        if (!e.source) {
          errors.push_back(derr);
          for (auto& [n, made] : clusters) made.stop();
          return false;
        }
      }
      e.monitor = health::make_monitor(rt_.control(), e.cl);
      clusters.emplace(c.name, std::move(e));
    }
    for (const auto& name : kept) clusters.emplace(name, std::move(clusters_.at(name)));

    std::vector<std::shared_ptr<pool::cluster>> list;  // config order
    for (const auto& c : next->clusters) list.push_back(clusters.at(c.name).cl);

    // 2. Listener states for the new configuration.
    struct planned {
      const config::listener* cfg;
      listener_entry entry;
      std::shared_ptr<const http::listener_state> http;
      std::shared_ptr<const l4::listener_state> tcp;
      bool open = false;  // needs new sockets
    };
    std::vector<planned> plan;
    for (const auto& l : next->listeners) {
      planned p;
      p.cfg = &l;
      auto old = find_listener(l.name);
      p.open = !old || !same_socket(old->cfg, l);
      p.entry.cfg = l;
      p.entry.slot = registry_->listener_slot(l.name);
      p.entry.key = l.name + "@" + l.address + "#" + std::to_string(++generation_);
      if (!p.open) {
        p.entry.key = old->key;
        p.entry.port = old->port;
        p.entry.tcp = old->tcp;
      }
      if (l.protocol == config::listener::protocol_kind::tcp) {
        auto st = l4::make_listener_state(l, list, p.entry.slot, registry_);
        st->config = next;
        p.tcp = std::move(st);
        if (!p.entry.tcp) p.entry.tcp = std::make_shared<tcp_cell>(rt_.workers());
      } else {
        auto st = http::make_listener_state(next, l, p.entry.slot, list);
        if (l.tls) st->tls = tls[&l];
        for (const auto& r : l.routes)  // per-route metrics: slots stable across reloads
          st->route_metrics.push_back(registry_->route_slot(l.name, config::route_label(r)));
        p.http = std::move(st);
      }
      plan.push_back(std::move(p));
    }

    // 3. Publish the states on every worker (before any new socket accepts: a worker runs its
    //    posts in order, and a new acceptor starts by a post queued after this one).
    std::vector<std::size_t> withdrawn;
    for (const auto& old : listeners_) {
      bool stays = false;
      for (const auto& p : plan)
        if (p.entry.slot == old.slot && p.http) stays = true;
      if (!stays && old.tcp == nullptr) withdrawn.push_back(old.slot);
    }
    for (unsigned w = 0; w < rt_.workers(); ++w) {
      std::vector<std::pair<std::size_t, std::shared_ptr<const http::listener_state>>> http;
      std::vector<std::pair<std::shared_ptr<tcp_cell>, std::shared_ptr<const l4::listener_state>>> tcp;
      for (const auto& p : plan) {
        if (p.http) http.emplace_back(p.entry.slot, p.http);
        if (p.tcp) tcp.emplace_back(p.entry.tcp, p.tcp);
      }
      asio::post(rt_.io(w), [w, http = std::move(http), tcp = std::move(tcp), withdrawn] {
        for (auto slot : withdrawn) http::publish_listener(slot, nullptr);
        for (const auto& [slot, st] : http) http::publish_listener(slot, st);
        for (const auto& [cell, st] : tcp) cell->per_worker[w] = st;
      });
    }

    // 4. Sockets: close the ones of removed or moved listeners, open the new ones.
    for (const auto& old : listeners_) {
      bool stays = false;
      for (const auto& p : plan)
        if (p.entry.key == old.key) stays = true;
      if (!stays) {
        rt_.unlisten(old.key);
        SLUICE_LOG(info, "listener closed name=" << old.cfg.name << " address=" << old.cfg.address);
      }
    }
    std::vector<std::string> open_failed;
    for (auto& p : plan) {
      if (!p.open) continue;
      net::listen_spec spec;
      spec.name = p.entry.key;
      spec.address = *core::resolve(p.cfg->address, nullptr, true);
      if (!cfg_ && inherit_) spec.inherited_fds = inherit_(p.cfg->name, spec.address);
      // A worker's load: every connection it serves, whatever the listener or protocol.
      spec.load = [this](unsigned w) {
        return http::active_sessions(*http_workers_[w]) + l4::active_sessions(*l4_workers_[w]) +
               h2::active_sessions(w);
      };
      if (p.tcp) {
        spec.on_accept = [cell = p.entry.tcp, this](unsigned w, asio::ip::tcp::socket s) {
          if (const auto& st = cell->per_worker[w]) l4::start_session(std::move(s), st, l4_workers_[w]);
        };
      } else {
        spec.on_accept = [slot = p.entry.slot, this](unsigned w, asio::ip::tcp::socket s) {
          if (const auto& st = http::current_listener(slot))
            http::start_session(std::move(s), st, http_workers_[w]);
        };
      }
      try {
        p.entry.port = rt_.listen(spec);
      } catch (const std::exception& e) {
        // At start-up this is fatal; on a reload the listener stays closed (the rest applies).
        open_failed.push_back(e.what());
        continue;
      }
      SLUICE_LOG(info, "listening name=" << p.cfg->name << " address="
                                         << bound_text(spec.address, p.entry.port)
                                         << " workers=" << rt_.workers());
    }
    if (!open_failed.empty() && !cfg_) {
      errors = std::move(open_failed);
      return false;
    }
    for (const auto& e : open_failed) SLUICE_LOG(error, "reload: " << e);

    // 5. Commit: the retired clusters' health checks and watches stop (their objects live on
    //    while old states or requests still use them).
    for (auto& [name, e] : clusters_)
      if (!clusters.count(name) || clusters.at(name).cl != e.cl) {
        e.stop();
        if (e.source && !clusters.count(name))
          registry_->set_discovery_source(registry_->cluster_slot(name), {});
      }
    clusters_ = std::move(clusters);
    cluster_list_ = std::move(list);
    listeners_.clear();
    for (auto& p : plan) listeners_.push_back(std::move(p.entry));
    cfg_ = std::move(next);
    {  // Metrics export this configuration's names; the others keep their counters, hidden.
      metrics::layout names;
      for (const auto& l : cfg_->listeners) {
        names.listeners.push_back(l.name);
        for (const auto& r : l.routes) names.routes.push_back({l.name, config::route_label(r)});
        if (l.protocol != config::listener::protocol_kind::tcp)
          registry_->forget_tcp_listener(registry_->listener_slot(l.name));
      }
      for (const auto& c : cfg_->clusters) names.clusters.push_back(c.name);
      registry_->retain(names);
    }
    for (auto& [name, e] : clusters_) {
      if (e.source && !e.started) {
        registry_->set_discovery_source(e.cl->metrics_slot(), discovery::metrics_probe(*e.source));
        if (started_) e.source->start();
        e.started = started_;
      }
    }
    return true;
  }

  /// Starts the discovery sources (once the runtime is about to run).
  void start() {
    started_ = true;
    for (auto& [name, e] : clusters_)
      if (e.source && !e.started) {
        e.source->start();
        e.started = true;
      }
  }

  /// Reloads the configuration file (control thread): SIGHUP and POST /reload.
  admin::reload_result reload() {
    admin::reload_result r;
    net::sd_notify("RELOADING=1");
    const std::string file = cfg_->file;
    SLUICE_LOG(info, "reloading configuration from " << file);
    auto loaded = config::load_file(file);
    if (!loaded.errors.empty()) {
      for (const auto& d : loaded.errors) r.errors.push_back(d.to_string());
    } else {
      auto next = std::make_shared<const config::config>(std::move(*loaded.value));
      for (const auto& c : config::diff(*cfg_, *next)) r.changes.push_back(c.to_string());
      std::vector<std::string> errors;
      r.ok = apply(next, errors);
      for (auto& e : errors) r.errors.push_back(file + ": " + e);
    }
    registry_->on_config_reload(r.ok);
    r.version = registry_->config_version();
    if (r.ok) {
      SLUICE_LOG(info, "configuration reloaded, version " << r.version << ", " << r.changes.size()
                                                          << " change(s)");
      for (const auto& c : r.changes) SLUICE_LOG(info, "reload: " << c);
      if (on_reloaded_) on_reloaded_();
    } else {
      for (const auto& e : r.errors) SLUICE_LOG(error, e);
      SLUICE_LOG(error, "configuration reload rejected; still serving version " << r.version);
    }
    net::sd_notify("READY=1");
    return r;
  }

  void on_reloaded(std::function<void()> f) { on_reloaded_ = std::move(f); }

  /// Binary upgrade: at the first apply, each listener adopts the sockets `inherit(name,
  /// address)` returns (none: it binds).
  void inherit_from(std::function<std::vector<int>(const std::string&, const core::address&)> f) {
    inherit_ = std::move(f);
  }
  /// The listening sockets to hand to a successor, labelled by listener name.
  std::vector<net::listener_fds> handoff_listeners() const {
    std::vector<net::listener_fds> out;
    for (auto& l : rt_.listening_fds())
      for (const auto& e : listeners_)
        if (e.key == l.name) out.push_back({e.cfg.name, std::move(l.fds)});
    return out;
  }

  std::vector<std::shared_ptr<pool::cluster>> cluster_list() const { return cluster_list_; }
  std::vector<std::size_t> listener_slots() const {
    std::vector<std::size_t> out;
    for (const auto& l : listeners_) out.push_back(l.slot);
    return out;
  }
  std::vector<std::uint16_t> listener_ports() const {
    std::vector<std::uint16_t> out;
    for (const auto& l : listeners_) out.push_back(l.port);
    return out;
  }

  // Drain (control thread): watches and probes stop, every worker drains its sessions.
  void drain() {
    for (auto& [name, e] : clusters_) e.stop();
    for (unsigned w = 0; w < rt_.workers(); ++w)
      asio::post(rt_.io(w), [ws = http_workers_[w], l4w = l4_workers_[w]] {
        http::drain(*ws);
        h2::drain();  // this worker's HTTP/2 connections: graceful GOAWAY
        l4::drain(*l4w);
      });
  }

  std::size_t active() const {
    std::size_t n = 0;
    for (const auto& ws : http_workers_) n += http::active_sessions(*ws);
    for (const auto& ws : l4_workers_) n += l4::active_sessions(*ws);
    n += h2::active_sessions();  // already summed over every worker
    return n;
  }

  void shutdown() {
    for (auto& [name, e] : clusters_) e.stop();
    clusters_.clear();
    http_workers_.clear();
    l4_workers_.clear();
  }

 private:
  const listener_entry* find_listener(const std::string& name) const {
    for (const auto& l : listeners_)
      if (l.cfg.name == name) return &l;
    return nullptr;
  }

  // Settings a reload does not change (they need a restart), said once per reload.
  static void warn_unapplied(const config::config& a, const config::config& b) {
    auto warn = [](const char* what) {
      SLUICE_LOG(warn, "reload: " << what << " changed; it takes effect at the next restart");
    };
    if (a.workers != b.workers) warn("workers");
    if (a.admin.address != b.admin.address) warn("admin.address");
    if (a.metrics.enabled != b.metrics.enabled) warn("metrics.enabled");
    if (a.log.error_log != b.log.error_log || a.log.level != b.log.level ||
        a.log.access.path != b.log.access.path || a.log.access.format != b.log.access.format)
      warn("log");
    if (a.drain_timeout != b.drain_timeout) warn("drain_timeout");
    if (a.upgrade_socket != b.upgrade_socket) warn("upgrade_socket");
  }

  net::runtime& rt_;
  std::shared_ptr<log::access_log> access_;
  std::shared_ptr<metrics::registry> registry_;
  std::vector<std::shared_ptr<http::worker_state>> http_workers_;
  std::vector<std::shared_ptr<l4::worker_state>> l4_workers_;
  std::shared_ptr<const config::config> cfg_;
  std::map<std::string, cluster_entry> clusters_;
  std::vector<std::shared_ptr<pool::cluster>> cluster_list_;
  std::vector<listener_entry> listeners_;  // config order
  std::uint64_t generation_ = 0;
  bool started_ = false;
  std::function<void()> on_reloaded_;
  std::function<std::vector<int>(const std::string&, const core::address&)> inherit_;
};

}  // namespace

namespace {

// The admin listener's socket from the predecessor when it listens on `address`, else -1.
int take_admin_socket(net::handoff_client* predecessor, const std::string& address) {
  if (!predecessor) return -1;
  auto fds = predecessor->take("admin", *core::resolve(address, nullptr, true));
  for (std::size_t i = 1; i < fds.size(); ++i) ::close(fds[i]);
  return fds.empty() ? -1 : fds.front();
}

}  // namespace

std::vector<std::string> preflight(const config::config& cfg) {
  std::vector<std::string> errors;
  for (const auto& c : cfg.clusters) {
    resolve_endpoints(c, &errors);
  }
  for (const auto& l : cfg.listeners) {
    std::string err;
    if (!core::resolve(l.address, &err, /*allow_zero_port=*/true))
      errors.push_back("listener " + l.name + ": address " + l.address + ": " + err);
  }
  return errors;
}

int run(const config::config& initial, const run_options& opts) {
  auto cfg = std::make_shared<const config::config>(initial);
  log::level lvl = log::level::info;
  log::parse_level(cfg->log.level, lvl);
  std::string err;
  if (!log::open(cfg->log.error_log, lvl, &err)) {
    SLUICE_LOG(error, err);
    return 1;
  }
  auto access = log::access_log::open(cfg->log.access.path,
                                      cfg->log.access.format == "json"
                                          ? log::access_log::format::json
                                          : log::access_log::format::combined,
                                      &err);
  if (!access) {
    SLUICE_LOG(error, err);
    return 1;
  }

  net::runtime rt(cfg->workers);
  metrics::layout shape;
  for (const auto& l : cfg->listeners) shape.listeners.push_back(l.name);
  for (const auto& c : cfg->clusters) shape.clusters.push_back(c.name);
  shape.workers = rt.workers();
  shape.enabled = cfg->metrics.enabled;
  auto registry = std::make_shared<metrics::registry>(std::move(shape));

  // Declared after `rt`, so it (with its health monitors and discovery sources on the control
  // thread, and the worker states) is destroyed before it.
  auto inst = std::make_unique<instance>(rt, access, registry);

  // Binary upgrade (upgrade_socket): with --upgrade the listening sockets come from the running
  // process; either way this process offers its own to the next binary.
  std::unique_ptr<net::handoff_client> predecessor;
  std::unique_ptr<net::handoff_server> upgrade_server;
  admin::server* admin_handle = nullptr;  // set once the admin listener runs
  auto offer_sockets = [&](bool replace) {
    net::handoff_server::hooks hooks{
        [&] {
          auto l = inst->handoff_listeners();
          const int fd = admin_handle ? admin_handle->listening_fd() : -1;
          if (!l.empty() && fd >= 0) l.push_back({"admin", {fd}});
          return l;
        },
        [&] {
          if (admin_handle) admin_handle->stop();  // its socket is the successor's now
          rt.stop();                               // drain, as on SIGQUIT
        }};
    upgrade_server = net::handoff_server::start(rt.control(), cfg->upgrade_socket,
                                                std::move(hooks), replace, &err);
    if (!upgrade_server) SLUICE_LOG(error, err);
    return upgrade_server != nullptr;
  };
  if (opts.upgrade) {
    predecessor = net::handoff_client::connect(cfg->upgrade_socket, std::chrono::seconds(10), &err);
    if (!predecessor) {
      SLUICE_LOG(error, "upgrade failed: " << err << "; the running process serves on");
      return 1;
    }
    inst->inherit_from([&](const std::string& name, const core::address& a) {
      return predecessor->take(name, a);
    });
  } else if (!cfg->upgrade_socket.empty() && !offer_sockets(false)) {
    return 1;
  }
  {
    std::vector<std::string> errors;
    if (!inst->apply(cfg, errors)) {
      for (const auto& e : errors) SLUICE_LOG(error, cfg->file << ": " << e);
      return 1;
    }
  }

  std::unique_ptr<admin::server> admin_server;
  if (!cfg->admin.address.empty()) {
    try {
      admin::server_options opts{cfg.get(), inst->cluster_list(), registry,
                                 inst->listener_slots(), [&inst] { return inst->reload(); }};
      admin_server = std::make_unique<admin::server>(rt.control(), std::move(opts));
      const int inherited = take_admin_socket(predecessor.get(), cfg->admin.address);
      const auto port =
          inherited >= 0 ? admin_server->start_inherited(inherited) : admin_server->start();
      admin_handle = admin_server.get();
      const auto ports = inst->listener_ports();
      for (std::size_t i = 0; i < ports.size(); ++i) admin_server->set_listener_port(i, ports[i]);
      SLUICE_LOG(info, "admin listening address="
                           << bound_text(*core::resolve(cfg->admin.address, nullptr, true), port));
    } catch (const std::exception& e) {
      SLUICE_LOG(error, e.what());
      return 1;
    }
  }
  if (predecessor) {
    // Every listener is up: the predecessor stops accepting and drains.
    if (!predecessor->go(&err)) {
      SLUICE_LOG(error, "upgrade failed: " << err << "; the running process serves on");
      return 1;
    }
    const auto from = predecessor->peer_pid();
    predecessor.reset();
    inst->inherit_from({});
    SLUICE_LOG(info, "upgrade: took over from pid " << from << "; serving as pid " << ::getpid());
    if (!offer_sockets(true)) SLUICE_LOG(error, "upgrade: the next binary upgrade will not work");
  }
  inst->on_reloaded([&] {
    if (!admin_server) return;
    admin_server->reconfigure(inst->config().get(), inst->cluster_list(), inst->listener_slots());
    const auto ports = inst->listener_ports();
    for (std::size_t i = 0; i < ports.size(); ++i) admin_server->set_listener_port(i, ports[i]);
  });

  rt.on_drain([&] {
    net::sd_notify("STOPPING=1");
    if (admin_server) admin_server->set_draining();
    // Control-thread timers (watches, probes) must stop, else the control loop never runs dry.
    inst->drain();
  });
  rt.active_counter([&] { return inst->active(); });
  rt.on_sigusr1([access] {
    SLUICE_LOG(info, "SIGUSR1: reopening log files");
    log::reopen();
    access->reopen();
  });
  rt.on_sighup([&] {
    SLUICE_LOG(info, "SIGHUP: reloading the configuration");
    inst->reload();
  });

  SLUICE_LOG(info, "sluice " SLUICE_VERSION " started, " << rt.workers() << " worker(s)");
  inst->start();
  // After an upgrade systemd must follow this process as the service's main one.
  net::sd_notify((opts.upgrade ? "MAINPID=" + std::to_string(::getpid()) + "\n" : std::string()) +
                 "READY=1\nSTATUS=serving " + std::to_string(cfg->listeners.size()) +
                 " listener(s), " + std::to_string(rt.workers()) + " worker(s)");
  int rc = rt.run(cfg->drain_timeout);
  if (admin_server) admin_server->stop();
  inst->shutdown();
  return rc;
}

}  // namespace sluice::app
