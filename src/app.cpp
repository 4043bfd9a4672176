// Wiring only: config → clusters → workers → listeners.
#include "app.hpp"

#include <exception>
#include <memory>

#include <boost/asio/post.hpp>

#include "admin/server.hpp"
#include "h2/proxy.hpp"
#include "http/proxy.hpp"
#include "l4/proxy.hpp"
#include "sluice/admin/status.hpp"
#include "sluice/metrics/registry.hpp"
#include "net/runtime.hpp"
#include "net/sd_notify.hpp"
#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_source.hpp"
#include "sluice/discovery/source_metrics.hpp"
#include "sluice/health/monitor.hpp"
#include "sluice/http/router.hpp"
#include "sluice/log/access_log.hpp"
#include "sluice/log/log.hpp"
#include "sluice/pool/cluster.hpp"

namespace sluice::app {

namespace {

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

}  // namespace

std::vector<std::string> preflight(const config::config& cfg) {
  std::vector<std::string> errors;
  for (const auto& c : cfg.clusters) {
    resolve_endpoints(c, &errors);
    if (c.protocol == config::upstream_protocol::h2)
      errors.push_back("cluster " + c.name + ": protocol h2 (TLS to upstreams) is not supported yet");
  }
  for (const auto& l : cfg.listeners) {
    std::string err;
    if (!core::resolve(l.address, &err, /*allow_zero_port=*/true))
      errors.push_back("listener " + l.name + ": address " + l.address + ": " + err);
  }
  return errors;
}

int run(const config::config& cfg) {
  log::level lvl = log::level::info;
  log::parse_level(cfg.log.level, lvl);
  std::string err;
  if (!log::open(cfg.log.error_log, lvl, &err)) {
    SLUICE_LOG(error, err);
    return 1;
  }
  auto problems = preflight(cfg);
  if (!problems.empty()) {
    for (const auto& p : problems) SLUICE_LOG(error, cfg.file << ": " << p);
    return 1;
  }
  auto access = log::access_log::open(cfg.log.access.path,
                                      cfg.log.access.format == "json"
                                          ? log::access_log::format::json
                                          : log::access_log::format::combined,
                                      &err);
  if (!access) {
    SLUICE_LOG(error, err);
    return 1;
  }

  std::vector<std::shared_ptr<pool::cluster>> clusters;
  for (const auto& c : cfg.clusters) {
    auto cl = std::make_shared<pool::cluster>(c);
    cl->update(resolve_endpoints(c, nullptr));
    clusters.push_back(std::move(cl));
  }
  auto cluster_index = [&](const std::string& name) {
    for (std::size_t i = 0; i < cfg.clusters.size(); ++i)
      if (cfg.clusters[i].name == name) return static_cast<int>(i);
    return -1;
  };

  net::runtime rt(cfg.workers);
  metrics::layout shape;
  for (const auto& l : cfg.listeners) shape.listeners.push_back(l.name);
  for (const auto& c : cfg.clusters) shape.clusters.push_back(c.name);
  shape.workers = rt.workers();
  shape.enabled = cfg.metrics.enabled;
  auto registry = std::make_shared<metrics::registry>(std::move(shape));
  registry->set_backends(admin::backend_enumerator(clusters));
  std::unique_ptr<admin::server> admin_server;
  std::vector<std::uint16_t> ports;

  // Health monitors run on the control thread too and follow membership changes by themselves.
  // Declared after `rt`, so they are destroyed before it.
  std::vector<std::unique_ptr<health::monitor>> monitors;
  for (const auto& cl : clusters) monitors.push_back(health::make_monitor(rt.control(), cl));

  // Discovery runs on the control thread; each source delivers the cluster's whole endpoint set
  // (its static endpoints merged with the discovered ones).
  std::vector<std::unique_ptr<discovery::etcd_source>> sources;
  for (std::size_t i = 0; i < cfg.clusters.size(); ++i) {
    if (!cfg.clusters[i].discovery) continue;
    std::string derr;
    auto src = discovery::make_etcd_source(
        rt.control(), cfg.clusters[i],
        [cl = clusters[i]](std::vector<pool::endpoint> eps) { cl->update(eps); }, &derr);
    if (!src) {
      SLUICE_LOG(error, derr);
      return 1;
    }
    registry->set_discovery_source(i, discovery::metrics_probe(*src));
    sources.push_back(std::move(src));
  }
  std::vector<std::shared_ptr<http::worker_state>> workers;
  for (unsigned w = 0; w < rt.workers(); ++w)
    workers.push_back(http::make_worker_state(rt.io(w), clusters, access, registry, w));

  std::vector<std::shared_ptr<l4::worker_state>> l4_workers;
  for (unsigned w = 0; w < rt.workers(); ++w)
    l4_workers.push_back(l4::make_worker_state(rt.io(w), clusters, registry, w));

  try {
    for (const auto& l : cfg.listeners) {
      net::listen_spec spec;
      spec.name = l.name;
      spec.address = *core::resolve(l.address, nullptr, true);
      if (l.protocol == config::listener::protocol_kind::tcp) {
        auto state = l4::make_listener_state(l, clusters, ports.size(), registry);
        spec.on_accept = [state, &l4_workers](unsigned w, boost::asio::ip::tcp::socket s) {
          l4::start_session(std::move(s), state, l4_workers[w]);
        };
      } else {
        auto state = std::make_shared<http::listener_state>();
        state->cfg = &l;
        state->index = ports.size();
        state->routes = std::make_shared<const http::router>(l.routes);
        for (const auto& r : l.routes)
          state->route_cluster.push_back(r.direct ? -1 : cluster_index(r.cluster));
        spec.on_accept = [state, &workers](unsigned w, boost::asio::ip::tcp::socket s) {
          http::start_session(std::move(s), state, workers[w]);
        };
      }
      auto port = rt.listen(spec);
      SLUICE_LOG(info, "listening name=" << l.name << " address=" << bound_text(spec.address, port)
                                         << " workers=" << rt.workers());
      ports.push_back(port);
    }
    if (!cfg.admin.address.empty()) {
      admin_server = std::make_unique<admin::server>(
          rt.control(), admin::server_options{&cfg, clusters, registry});
      const auto port = admin_server->start();
      for (std::size_t i = 0; i < ports.size(); ++i) admin_server->set_listener_port(i, ports[i]);
      SLUICE_LOG(info, "admin listening address="
                           << bound_text(*core::resolve(cfg.admin.address, nullptr, true), port));
    }
  } catch (const std::exception& e) {
    SLUICE_LOG(error, e.what());
    return 1;
  }

  rt.on_drain([&] {
    net::sd_notify("STOPPING=1");
    if (admin_server) admin_server->set_draining();
    // Control-thread timers (watches, probes) must stop, else the control loop never runs dry.
    for (auto& s : sources) s->stop();
    for (auto& m : monitors) m->stop();
    for (unsigned w = 0; w < rt.workers(); ++w)
      boost::asio::post(rt.io(w), [ws = workers[w], l4w = l4_workers[w]] {
        http::drain(*ws);
        h2::drain();  // this worker's HTTP/2 connections: graceful GOAWAY
        l4::drain(*l4w);
      });
  });
  rt.active_counter([&] {
    std::size_t n = 0;
    for (const auto& ws : workers) n += http::active_sessions(*ws);
    for (const auto& ws : l4_workers) n += l4::active_sessions(*ws);
    n += h2::active_sessions();  // already summed over every worker
    return n;
  });
  rt.on_sigusr1([access] {
    SLUICE_LOG(info, "SIGUSR1: reopening log files");
    log::reopen();
    access->reopen();
  });
  rt.on_sighup([] { SLUICE_LOG(warn, "SIGHUP: configuration reload is not supported yet; ignored"); });

  SLUICE_LOG(info, "sluice " SLUICE_VERSION " started, " << rt.workers() << " worker(s)");
  for (auto& s : sources) s->start();
  net::sd_notify("READY=1\nSTATUS=serving " + std::to_string(cfg.listeners.size()) +
                 " listener(s), " + std::to_string(rt.workers()) + " worker(s)");
  int rc = rt.run(cfg.drain_timeout);
  if (admin_server) admin_server->stop();
  sources.clear();
  monitors.clear();
  workers.clear();
  l4_workers.clear();
  return rc;
}

}  // namespace sluice::app
