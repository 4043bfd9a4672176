#include "sluice/discovery/register.hpp"

#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "discovery/etcd_client.hpp"
#include "sluice/core/address.hpp"
#include "sluice/discovery/etcd_protocol.hpp"
#include "sluice/discovery/registration.hpp"
#include "sluice/log/log.hpp"

namespace sluice::discovery {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr const char* usage =
    "usage: sluice register --etcd HOST:PORT[,HOST:PORT...] --address HOST:PORT\n"
    "                       [--prefix /nodes/] [--ttl SECONDS] [--id ID] [--weight 1-1000]\n"
    "                       [--protocol NAME] [--user NAME --password PASSWORD]\n"
    "                       [--ca FILE] [--cert FILE --key FILE]\n"
    "Registers HOST:PORT under PREFIX+ID in etcd with a lease of SECONDS (default 5), keeps the\n"
    "lease alive, and removes the key on SIGTERM/SIGINT.\n";

struct options {
  std::vector<std::string> etcd;
  std::string prefix = "/nodes/";
  std::string address;
  std::int64_t ttl = 5;
  std::string id;
  std::uint32_t weight = 1;
  std::string protocol;
  etcd::credentials creds;
  std::optional<config::etcd_tls> tls;
};

std::string uuid_v4() {
  std::random_device rd;
  unsigned char b[16];
  for (auto& x : b) x = static_cast<unsigned char>(rd());
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += hex[b[i] >> 4];
    out += hex[b[i] & 15];
  }
  return out;
}

bool parse_int(const std::string& s, std::int64_t lo, std::int64_t hi, std::int64_t& out) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  out = std::stoll(s);
  return out >= lo && out <= hi;
}

// Returns an error message, empty when the options are good.
std::string parse_args(int argc, char** argv, options& o) {
  int i = 1;
  if (i < argc && std::string_view(argv[i]) == "register") ++i;  // full argv handed over
  bool have_ttl = false;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return "help";
    if (arg.rfind("--", 0) != 0) return "unexpected argument '" + arg + "'";
    if (i + 1 >= argc) return "option " + arg + " needs a value";
    const std::string v = argv[++i];
    std::int64_t n = 0;
    if (arg == "--etcd") {
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) {
        if (item.find("://") != std::string::npos)
          return "--etcd: write host:port without a scheme, got '" + item + "'";
        if (!core::split_host_port(item)) return "--etcd: expected host:port, got '" + item + "'";
        o.etcd.push_back(item);
      }
    } else if (arg == "--prefix") {
      if (v.empty()) return "--prefix must not be empty";
      o.prefix = v;
    } else if (arg == "--address") {
      if (!core::split_host_port(v)) return "--address: expected host:port with a port 1-65535, got '" + v + "'";
      o.address = v;
    } else if (arg == "--ttl") {
      if (!parse_int(v, 2, 3600, n)) return "--ttl: expected whole seconds between 2 and 3600, got '" + v + "'";
      o.ttl = n;
      have_ttl = true;
    } else if (arg == "--id") {
      if (v.empty() || v.find('/') != std::string::npos) return "--id must be non-empty without '/'";
      o.id = v;
    } else if (arg == "--weight") {
      if (!parse_int(v, 1, max_weight, n)) return "--weight: expected an integer between 1 and 1000, got '" + v + "'";
      o.weight = static_cast<std::uint32_t>(n);
    } else if (arg == "--protocol") {
      o.protocol = v;
    } else if (arg == "--user") {
      o.creds.username = v;
    } else if (arg == "--password") {
      o.creds.password = v;
    } else if (arg == "--ca") {
      if (!o.tls) o.tls.emplace();
      o.tls->ca = v;
    } else if (arg == "--cert") {
      if (!o.tls) o.tls.emplace();
      o.tls->cert = v;
    } else if (arg == "--key") {
      if (!o.tls) o.tls.emplace();
      o.tls->key = v;
    } else {
      return "unknown option " + arg;
    }
  }
  (void)have_ttl;
  if (o.etcd.empty()) return "--etcd is required";
  if (o.address.empty()) return "--address is required";
  if (o.tls && (o.tls->cert.empty() != o.tls->key.empty())) return "--cert and --key go together";
  if (!o.creds.password.empty() && o.creds.username.empty()) return "--password needs --user";
  if (o.id.empty()) o.id = uuid_v4();
  return {};
}

class registrar {
 public:
  registrar(asio::io_context& io, options o, std::shared_ptr<asio::ssl::context> tls)
      : io_(io), o_(std::move(o)), tls_(std::move(tls)), timer_(io), key_(o_.prefix + o_.id) {
    registration r;
    r.address = o_.address;
    r.weight = o_.weight;
    r.protocol = o_.protocol;
    value_ = format_registration(r);
  }

  void request_stop() {
    stopping_ = true;
    timer_.cancel();
  }

  asio::awaitable<int> run() {
    std::string why;
    if (!co_await connect_any(why)) {
      std::cerr << "sluice register: cannot use etcd at any of the given endpoints (" << why << ")\n";
      co_return 1;
    }
    if (!co_await register_key(why)) {
      std::cerr << "sluice register: " << why << "\n";
      co_await conn_->post("/v3/lease/revoke", etcd::lease_id_request(lease_), reply_, 2s);
      co_return 1;
    }
    std::cout << "registered " << key_ << " lease " << lease_ << std::endl;
    const auto interval = std::chrono::milliseconds(std::max<std::int64_t>(500, o_.ttl * 1000 / 3));
    while (!stopping_) {
      timer_.expires_after(connected() ? interval : std::min(interval, std::chrono::milliseconds(1000)));
      co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (stopping_) break;
      co_await keep_alive();
    }
    co_await unregister();
    co_return 0;
  }

 private:
  bool connected() const { return conn_ && conn_->is_open(); }

  asio::awaitable<bool> connect_any(std::string& why) {
    why.clear();
    for (std::size_t i = 0; i < o_.etcd.size(); ++i) {
      const auto& ep = o_.etcd[(next_ + i) % o_.etcd.size()];
      conn_ = std::make_unique<etcd::connection>(io_.get_executor(), tls_);
      auto ec = co_await conn_->connect(ep, 3s);
      if (!ec && !o_.creds.username.empty()) ec = co_await conn_->authenticate(o_.creds, 5s);
      if (!ec) {
        next_ = (next_ + i) % o_.etcd.size();
        co_return true;
      }
      if (!why.empty()) why += "; ";
      why += conn_->last_error();
    }
    conn_->close();
    co_return false;
  }

  // Grants a lease and puts the key on it.
  asio::awaitable<bool> register_key(std::string& why) {
    std::string err;
    if (auto ec = co_await conn_->call("/v3/lease/grant", etcd::lease_grant_request(o_.ttl), o_.creds, reply_, 5s)) {
      why = conn_->last_error();
      co_return false;
    }
    auto id = etcd::parse_lease_grant_response(reply_.body, &err);
    if (!id) {
      why = "lease grant failed: " + etcd::explain_gateway_error(err, tls_ != nullptr);
      co_return false;
    }
    lease_ = *id;
    if (auto ec = co_await conn_->call("/v3/kv/put", etcd::put_request(key_, value_, lease_), o_.creds, reply_, 5s)) {
      why = conn_->last_error();
      co_return false;
    }
    if (!etcd::parse_header_revision(reply_.body, &err)) {
      why = "put " + key_ + " failed: " + err;
      co_return false;
    }
    co_return true;
  }

  asio::awaitable<void> keep_alive() {
    std::string why;
    if (!connected() && !co_await connect_any(why)) {
      SLUICE_LOG(warn, "register: etcd unreachable (" << why << "); retrying");
      co_return;
    }
    std::string err;
    std::optional<std::int64_t> ttl;
    if (auto ec = co_await conn_->call("/v3/lease/keepalive", etcd::lease_id_request(lease_), o_.creds, reply_, 5s)) {
      SLUICE_LOG(warn, "register: keep-alive failed: " << conn_->last_error() << "; retrying");
      conn_->close();
      co_return;
    }
    ttl = etcd::parse_keepalive_response(reply_.body, &err);
    if (!ttl) {
      SLUICE_LOG(warn, "register: keep-alive failed: " << err);
      co_return;
    }
    if (*ttl > 0) co_return;
    // The lease is gone (etcd unreachable for longer than the TTL, or revoked by someone):
    // register again under the same key with a new lease.
    SLUICE_LOG(warn, "register: lease " << lease_ << " expired; registering " << key_ << " again");
    if (!co_await register_key(why))
      SLUICE_LOG(warn, "register: " << why << "; retrying");
    else
      std::cout << "registered " << key_ << " lease " << lease_ << std::endl;
  }

  asio::awaitable<void> unregister() {
    std::string why;
    if (!connected() && !co_await connect_any(why)) {
      SLUICE_LOG(warn, "register: etcd unreachable at exit (" << why << "); " << key_
                                                              << " goes when its lease expires");
      co_return;
    }
    co_await conn_->call("/v3/kv/deleterange", etcd::delete_request(key_), o_.creds, reply_, 3s);
    co_await conn_->call("/v3/lease/revoke", etcd::lease_id_request(lease_), o_.creds, reply_, 3s);
    std::cout << "unregistered " << key_ << std::endl;
  }

  asio::io_context& io_;
  options o_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::steady_timer timer_;
  std::string key_;
  std::string value_;
  std::unique_ptr<etcd::connection> conn_;
  etcd::http_reply reply_;
  std::int64_t lease_ = 0;
  std::size_t next_ = 0;
  bool stopping_ = false;
};

}  // namespace

int run_register(int argc, char** argv) {
  options o;
  const std::string err = parse_args(argc, argv, o);
  if (err == "help") {
    std::cout << usage;
    return 0;
  }
  if (!err.empty()) {
    std::cerr << "sluice register: " << err << "\n" << usage;
    return 2;
  }
  std::shared_ptr<asio::ssl::context> tls;
  if (o.tls) {
    std::string terr;
    tls = etcd::make_tls_context(*o.tls, &terr);
    if (!tls) {
      std::cerr << "sluice register: " << terr << "\n";
      return 2;
    }
  }
  try {
    asio::io_context io(1);
    registrar r(io, std::move(o), std::move(tls));
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int) {
      if (!ec) r.request_stop();
    });
    int rc = 1;
    asio::co_spawn(io, r.run(), [&](std::exception_ptr e, int code) {
      rc = e ? 1 : code;
      signals.cancel();
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::cerr << "sluice register: " << x.what() << "\n";
        }
      }
    });
    io.run();
    return rc;
  } catch (const std::exception& e) {
    std::cerr << "sluice register: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace sluice::discovery
