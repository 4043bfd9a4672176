// Command line: parses argv the way nginx users expect and runs the app.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "app.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/discovery/register.hpp"

namespace {

constexpr const char* default_config = "/etc/sluice/sluice.yaml";

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: sluice [-c FILE] [-t] [--version] [--help]\n"
               "       sluice register --etcd HOST:PORT[,...] --prefix /nodes/ --address HOST:PORT [--ttl 5]\n"
               "\n"
               "  -c, --config FILE  configuration file (default %s)\n"
               "  -t, --test         check the configuration and exit (0 when valid; errors as\n"
               "                     FILE:LINE:COL: key.path: message)\n"
               "  -v, --version      print the version and exit\n"
               "  -h, --help         print this help and exit\n"
               "\n"
               "signals: SIGTERM/SIGINT/SIGQUIT drain and exit, SIGUSR1 reopens log files\n",
               default_config);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "register")
    return sluice::discovery::run_register(argc - 1, argv + 1);
  std::string config_path = default_config;
  bool test_only = false;
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
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  return sluice::app::run(*loaded.value);
}
