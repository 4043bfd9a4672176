#!/usr/bin/env bash
# Builds sluice and the demo backend, starts three demo backends (a, b, c on 127.0.0.1:8001-8003)
# and runs sluice in the foreground with config/sluice.yaml (listener 127.0.0.1:8080).
# Ctrl-C (or SIGTERM) stops sluice and the backends this script started.
# BUILD_DIR overrides the build directory (default build/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD_DIR:-$root/build}"
config="$root/config/sluice.yaml"
ports=(8001 8002 8003)
ids=(a b c)

port_busy() {
  # Something already accepts on 127.0.0.1:$1 (bash's /dev/tcp, no extra tools needed).
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "${ports[@]}" 8080; do
  if port_busy "$port"; then
    echo "run-demo: port 127.0.0.1:$port is busy; stop whatever listens there and retry" >&2
    exit 1
  fi
done

"$root/scripts/install-deps.sh"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" -j "$(nproc)" sluice sluice-demo-backend

pids=()
tmp="$(mktemp -d)"
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for i in "${!ports[@]}"; do
  out="$tmp/backend-${ids[$i]}.out"
  "$build/sluice-demo-backend" --listen "127.0.0.1:${ports[$i]}" --id "${ids[$i]}" >"$out" &
  pids+=("$!")
  # Wait (up to 10 s) for its "listening" line, or for it to die (e.g. the port got taken).
  for _ in $(seq 100); do
    grep -q '^listening ' "$out" 2>/dev/null && break
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "run-demo: demo backend ${ids[$i]} could not listen on 127.0.0.1:${ports[$i]}" >&2
      exit 1
    fi
    sleep 0.1
  done
  grep -q '^listening ' "$out" || { echo "run-demo: backend ${ids[$i]} did not start" >&2; exit 1; }
  echo "run-demo: backend ${ids[$i]} $(cat "$out")"
done

cat <<EOF

sluice is starting on 127.0.0.1:8080 (config: config/sluice.yaml). Try:
  curl -i http://127.0.0.1:8080/
  for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:8080/; done   # round robin over a, b, c
Ctrl-C stops sluice and the three backends.

EOF

# Not exec: the EXIT trap must still stop the backends when sluice exits.
"$build/sluice" -c "$config" &
pids+=("$!")
sluice_pid=$!
set +e
wait "$sluice_pid"
status=$?
set -e
exit "$status"
