#!/usr/bin/env bash
# Installs what is missing, builds sluice twice (optimised, then with ASan+UBSan) and runs every
# test (unit + integration) against each build. This is what CI runs (.ci/run).
#   scripts/test.sh             both builds
#   SLUICE_SKIP_SANITIZE=1 scripts/test.sh   optimised build only
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

jobs=$(nproc)
# ccache hits across clones in different folders (CI clones afresh each time).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
run_suite() {
  local dir=$1; shift
  echo "== configure $dir ($*)"
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  echo "== build $dir"
  local start=$SECONDS
  cmake --build "$dir" -j "$jobs"
  echo "== built $dir in $((SECONDS - start)) s"
  echo "== test $dir"
  ctest --test-dir "$dir" --output-on-failure -j 1 --timeout 900
}

run_suite build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [[ "${SLUICE_SKIP_SANITIZE:-0}" != 1 ]]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON
fi
echo "== all tests passed"
