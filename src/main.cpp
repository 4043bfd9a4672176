// Command line: parses argv the way nginx users expect and runs the app.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "app.hpp"
#include "sluice/admin/status_client.hpp"
#include "sluice/config/diff.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/discovery/register.hpp"

namespace {

constexpr const char* default_config = "/etc/sluice/sluice.yaml";

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: sluice [-c FILE] [-t] [--diff OTHER | --diff-admin URL [--admin-token TOKEN]]\n"
               "              [--upgrade] [--version] [--help]\n"
               "       sluice register --etcd HOST:PORT[,...] --prefix /nodes/ --address HOST:PORT [--ttl 5]\n"
               "\n"
               "  -c, --config FILE  configuration file (default %s)\n"
               "  -t, --test         check the configuration and exit (0 when valid; errors as\n"
               "                     FILE:LINE:COL: key.path: message)\n"
               "  --diff OTHER       check FILE, then print what would change going from the\n"
               "                     configuration OTHER to FILE (implies -t)\n"
               "  --diff-admin URL   same against the instance whose admin listener is at URL\n"
               "                     (http://HOST:PORT), from its GET /status (implies -t)\n"
               "  --admin-token TOKEN  bearer token for --diff-admin (default: $SLUICE_ADMIN_TOKEN,\n"
               "                     else FILE's admin.token)\n"
               "  --upgrade          take the listening sockets over from the sluice running with\n"
               "                     FILE's upgrade_socket, which then drains (binary upgrade)\n"
               "  -v, --version      print the version and exit\n"
               "  -h, --help         print this help and exit\n"
               "\n"
               "signals: SIGTERM/SIGINT/SIGQUIT drain and exit, SIGUSR1 reopens log files\n",
               default_config);
}

// `-t --diff OTHER` / `-t --diff-admin URL`: what would change going from OTHER (or the running
// instance) to `next`, one line per change on stdout. 0 when both sides could be read, else 1.
int print_diff(const sluice::config::config& next, const std::string& other_file,
               const std::string& admin_url, std::string token) {
  namespace config = sluice::config;
  config::config from;
  config::config to = next;
  config::diff_options opts;
  if (!other_file.empty()) {
    auto other = config::load_file(other_file);
    if (!other.errors.empty()) {
      for (const auto& d : other.errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
      std::fprintf(stderr, "sluice: cannot compare with %s: it is not a valid configuration\n",
                   other_file.c_str());
      return 1;
    }
    from = std::move(*other.value);
    std::printf("--- %s\n+++ %s\n", other_file.c_str(), next.file.c_str());
  } else {
    if (token.empty())
      if (const char* env = std::getenv("SLUICE_ADMIN_TOKEN")) token = env;
    if (token.empty()) token = next.admin.token;
    std::string err;
    auto body = sluice::admin::fetch_status(admin_url, token, std::chrono::seconds(10), &err);
    auto live = body ? sluice::admin::config_from_status(*body, &err) : std::nullopt;
    if (!live) {
      std::fprintf(stderr, "sluice: --diff-admin: %s\n", err.c_str());
      return 1;
    }
    from = std::move(*live);
    to = config::status_view(next);
    opts.from_running = true;
    std::printf("--- running instance at %s (%s)\n+++ %s\n", admin_url.c_str(),
                from.file.empty() ? "file unknown" : from.file.c_str(), next.file.c_str());
    std::printf("# compared on what /status shows: listeners, routes, cluster policy, protocol,\n"
                "# health check type and endpoints\n");
  }
  const auto changes = config::diff(from, to, opts);
  for (const auto& c : changes) std::printf("%s\n", c.to_string().c_str());
  if (changes.empty()) std::printf("no changes\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "register")
    return sluice::discovery::run_register(argc - 1, argv + 1);
  std::string config_path = default_config;
  bool test_only = false;
  bool upgrade = false;
  std::string diff_file, diff_admin, admin_token;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sluice: %s needs a file argument\n", argv[i]);
        return 2;
      }
      config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      config_path = std::string(arg.substr(9));
    } else if (arg == "-t" || arg == "--test") {
      test_only = true;
    } else if (arg == "--diff" || arg == "--diff-admin" || arg == "--admin-token") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sluice: %s needs an argument\n", argv[i]);
        return 2;
      }
      (arg == "--diff" ? diff_file : arg == "--diff-admin" ? diff_admin : admin_token) = argv[++i];
      if (arg != "--admin-token") test_only = true;
    } else if (arg == "--upgrade") {
      upgrade = true;
    } else if (arg == "-v" || arg == "--version") {
      std::printf("sluice %s\n", SLUICE_VERSION);
      return 0;
    } else if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "sluice: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (!diff_file.empty() && !diff_admin.empty()) {
    std::fprintf(stderr, "sluice: --diff and --diff-admin do not go together\n");
    return 2;
  }
  if (upgrade && test_only) {
    std::fprintf(stderr, "sluice: --upgrade does not go with -t or --diff\n");
    return 2;
  }
  if (!admin_token.empty() && diff_admin.empty()) {
    std::fprintf(stderr, "sluice: --admin-token goes with --diff-admin\n");
    return 2;
  }

  auto loaded = sluice::config::load_file(config_path);
  if (!loaded.errors.empty()) {
    for (const auto& d : loaded.errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    std::fprintf(stderr, "sluice: configuration file %s test failed (%zu error%s)\n",
                 config_path.c_str(), loaded.errors.size(), loaded.errors.size() == 1 ? "" : "s");
    return 1;
  }
  auto problems = sluice::app::preflight(*loaded.value);
  if (!problems.empty()) {
    for (const auto& p : problems) std::fprintf(stderr, "%s: %s\n", config_path.c_str(), p.c_str());
    std::fprintf(stderr, "sluice: configuration file %s test failed\n", config_path.c_str());
    return 1;
  }
  if (test_only) {
    std::fprintf(stderr, "sluice: configuration file %s test is successful\n", config_path.c_str());
    if (!diff_file.empty() || !diff_admin.empty())
      return print_diff(*loaded.value, diff_file, diff_admin, admin_token);
    return 0;
  }
  if (upgrade && loaded.value->upgrade_socket.empty()) {
    std::fprintf(stderr, "sluice: --upgrade needs upgrade_socket in %s\n", config_path.c_str());
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);
  sluice::app::run_options opts;
  opts.upgrade = upgrade;
  return sluice::app::run(*loaded.value, opts);
}
