#!/usr/bin/env bash
# Installs, with apt-get, whatever sluice needs to build, test or benchmark that is missing.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the benchmark peers (nginx, haproxy, wrk)
set -euo pipefail

build_pkgs=(build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libyaml-cpp-dev prometheus-cpp-dev catch2 libssl-dev libnghttp2-dev liburing-dev)
test_pkgs=(curl python3 procps openssl
  prometheus    # promtool and a real Prometheus server (tests/integration/test_admin.py)
  etcd-server etcd-client  # real etcd for discovery (tests/integration/test_etcd.py)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # Hello gRPC peers
  nghttp2-client  # h2load and nghttp (tests/integration/test_grpc.py, tests/bench/grpc.sh)
  nghttp2-server  # nghttpd, an h2c upstream (tests/integration/test_h1_to_h2c.py)
  nodejs chromium)  # status page browser test (tests/e2e), with playwright-core from npm
bench_pkgs=(nginx-light libnginx-mod-stream haproxy wrk)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
if [[ "${1:-}" == "--bench" ]]; then want+=("${bench_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# npm packages of the browser test go into tests/e2e/node_modules (tests/e2e/package.json).
install_e2e_node_modules() {
  local e2e
  e2e="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e"
  if [[ -d "$e2e/node_modules/playwright-core" ]]; then return 0; fi
  if ! command -v npm >/dev/null; then
    # Debian's nodejs ships npm separately; other nodejs builds bundle it.
    $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  echo "install-deps: npm install in tests/e2e"
  (cd "$e2e" && npm install --no-audit --no-fund --silent)
}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  install_e2e_node_modules
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_e2e_node_modules
echo "install-deps: done"
