#!/usr/bin/env bash
# Installs, with apt-get, whatever sluice needs to build, test or benchmark that is missing.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the benchmark peers (nginx, haproxy, wrk)
set -euo pipefail

build_pkgs=(build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libyaml-cpp-dev prometheus-cpp-dev catch2 libssl-dev libnghttp2-dev)
test_pkgs=(curl python3 procps)
bench_pkgs=(nginx-light haproxy wrk)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
if [[ "${1:-}" == "--bench" ]]; then want+=("${bench_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
