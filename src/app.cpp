// Wiring only: config → clusters → workers → listeners.
#include "app.hpp"

#include <exception>
#include <memory>

#include <boost/asio/post.hpp>

#include "admin/server.hpp"
#include "http/proxy.hpp"
#include "sluice/admin/status.hpp"
#include "sluice/metrics/registry.hpp"
#include "net/runtime.hpp"
#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_source.hpp"
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

}  // namespace

std::vector<std::string> preflight(const config::config& cfg) {
  std::vector<std::string> errors;
  for (const auto& c : cfg.clusters) {
    resolve_endpoints(c, &errors);
    if (c.protocol != config::upstream_protocol::http1)
      errors.push_back("cluster " + c.name + ": protocol other than http1 is not supported yet");
  }
  for (const auto& l : cfg.listeners) {
    std::string err;
    if (!core::resolve(l.address, &err, /*allow_zero_port=*/true))
      errors.push_back("listener " + l.name + ": address " + l.address + ": " + err);
    if (l.protocol == config::listener::protocol_kind::tcp)
      errors.push_back("listener " + l.name + ": protocol tcp is not supported by this build yet");
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
    sources.push_back(std::move(src));
  }
  std::vector<std::shared_ptr<http::worker_state>> workers;
  for (unsigned w = 0; w < rt.workers(); ++w)
    workers.push_back(http::make_worker_state(rt.io(w), clusters, access, registry, w));

  try {
    for (const auto& l : cfg.listeners) {
      auto state = std::make_shared<http::listener_state>();
      state->cfg = &l;
      state->index = ports.size();
      state->routes = std::make_shared<const http::router>(l.routes);
      for (const auto& r : l.routes) state->route_cluster.push_back(r.direct ? -1 : cluster_index(r.cluster));
      net::listen_spec spec;
      spec.name = l.name;
      spec.address = *core::resolve(l.address, nullptr, true);
      spec.on_accept = [state, &workers](unsigned w, boost::asio::ip::tcp::socket s) {
        http::start_session(std::move(s), state, workers[w]);
      };
      auto port = rt.listen(spec);
      auto bound = spec.address;
      SLUICE_LOG(info, "listening name=" << l.name << " address="
                                         << (bound.storage.ss_family == AF_INET6 ? "[" + bound.host() + "]" : bound.host())
                                         << ':' << port << " workers=" << rt.workers());
      ports.push_back(port);
    }
    if (!cfg.admin.address.empty()) {
      admin_server = std::make_unique<admin::server>(
          rt.control(), admin::server_options{&cfg, clusters, registry});
      const auto port = admin_server->start();
      for (std::size_t i = 0; i < ports.size(); ++i) admin_server->set_listener_port(i, ports[i]);
      auto bound = *core::resolve(cfg.admin.address, nullptr, true);
      SLUICE_LOG(info, "admin listening address="
                           << (bound.storage.ss_family == AF_INET6 ? "[" + bound.host() + "]" : bound.host())
                           << ':' << port);
    }
  } catch (const std::exception& e) {
    SLUICE_LOG(error, e.what());
    return 1;
  }

  rt.on_drain([&] {
    if (admin_server) admin_server->set_draining();
    // Control-thread timers (watches, probes) must stop, else the control loop never runs dry.
    for (auto& s : sources) s->stop();
    for (auto& m : monitors) m->stop();
    for (unsigned w = 0; w < rt.workers(); ++w)
      boost::asio::post(rt.io(w), [ws = workers[w]] { http::drain(*ws); });
  });
  rt.active_counter([&] {
    std::size_t n = 0;
    for (const auto& ws : workers) n += http::active_sessions(*ws);
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
  int rc = rt.run(cfg.drain_timeout);
  if (admin_server) admin_server->stop();
  sources.clear();
  monitors.clear();
  workers.clear();
  return rc;
}

}  // namespace sluice::app
