#!/usr/bin/env bash
# The seed's cluster with sluice in place of nginx, on this machine, in one command:
# etcd, three Hello gRPC servers that register themselves in etcd (lease + keep-alive), sluice
# discovering them from etcd, and a client making calls through sluice on one channel.
#
#   examples/hello-cluster/run.sh
#
# Environment: CALLS (calls per round, default 30), BUILD_DIR (default: build/ at the top of the
# repository, reused when present), JOBS (parallel compile jobs, default 2), SKIP_DEPS=1 (do not
# run scripts/install-deps.sh), KEEP=1 (leave everything running until Ctrl-C), SLUICE_BIN (use
# this sluice binary instead of building one).
# Everything it starts is stopped when it exits, and its temporary directory is removed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO/build}"
JOBS="${JOBS:-2}"
CALLS="${CALLS:-30}"
TTL=5

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# ---- cleanup: every process started here, by PID; the temporary directory ---------------------
PIDS=()
WORK=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    step "stopping everything started here"
    # Reverse order: client side first, etcd last (servers deregister while etcd is up).
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      kill -TERM "${PIDS[i]}" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "${PIDS[i]}" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "${PIDS[i]}" 2>/dev/null || true
      wait "${PIDS[i]}" 2>/dev/null || true
    done
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until FILE has a line matching REGEX (grep -E); fails after SECONDS or when PID exits.
wait_line() {
  local file=$1 regex=$2 pid=$3 seconds=${4:-60} name=$5
  for _ in $(seq $((seconds * 10))); do
    if grep -Eq "$regex" "$file" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      printf 'run.sh: %s exited; its output:\n' "$name" >&2
      tail -n 20 "$file" "${file%.out}.err" 2>/dev/null >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  die "$name: no line matching '$regex' after ${seconds}s (see $file)"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- 1. dependencies --------------------------------------------------------------------------
step "1. dependencies (scripts/install-deps.sh)"
if [[ "${SKIP_DEPS:-0}" == 1 ]]; then
  info "skipped (SKIP_DEPS=1)"
else
  "$REPO/scripts/install-deps.sh"
fi
command -v etcd >/dev/null || die "etcd not found (Debian package etcd-server)"
command -v curl >/dev/null || die "curl not found"

# ---- 2. build -----------------------------------------------------------------------------------
step "2. building sluice and the example in $BUILD_DIR"
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$REPO" -B "$BUILD_DIR" >/dev/null
else
  cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
targets=(sluice-hello-cluster-server sluice-hello-cluster-client)
if [[ -z "${SLUICE_BIN:-}" ]]; then targets+=(sluice); fi
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}" \
  || die "build failed (the example needs grpc++: libgrpc++-dev protobuf-compiler-grpc)"
SLUICE="${SLUICE_BIN:-$BUILD_DIR/sluice}"
SERVER="$BUILD_DIR/tests/sluice-hello-cluster-server"
CLIENT="$BUILD_DIR/tests/sluice-hello-cluster-client"
info "sluice:  $SLUICE"
info "server:  $SERVER"
info "client:  $CLIENT"

WORK="$(mktemp -d /tmp/sluice-hello-cluster.XXXXXX)"

# ---- 3. etcd ------------------------------------------------------------------------------------
step "3. etcd on loopback (data in $WORK/etcd)"
ETCD_PORT=$(free_port)
PEER_PORT=$(free_port)
etcd --name hello-cluster --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "hello-cluster=http://127.0.0.1:$PEER_PORT" --log-level warn \
  >"$WORK/etcd.out" 2>"$WORK/etcd.err" &
PIDS+=($!)
ETCD_PID=$!
for _ in $(seq 300); do
  if curl -sf "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
  kill -0 "$ETCD_PID" 2>/dev/null || { tail -n 20 "$WORK/etcd.err" >&2; die "etcd exited"; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"' || die "etcd is not healthy"
info "etcd listening on 127.0.0.1:$ETCD_PORT (pid $ETCD_PID)"

# ---- 4. three Hello servers, each registering /nodes/<uuid> with a ${TTL}s lease --------------
step "4. three Hello servers registering in etcd under /nodes/ (lease ${TTL}s, keep-alive every $((TTL * 1000 / 3)) ms)"
SERVER_PIDS=()
for n in 1 2 3; do
  "$SERVER" --listen 127.0.0.1:0 --etcd "127.0.0.1:$ETCD_PORT" --prefix /nodes/ --ttl "$TTL" \
    >"$WORK/server$n.out" 2>"$WORK/server$n.err" &
  PIDS+=($!)
  SERVER_PIDS+=($!)
  wait_line "$WORK/server$n.out" '^registered ' $! 60 "server $n"
  info "server $n (pid ${SERVER_PIDS[-1]}): $(grep -m1 '^listening' "$WORK/server$n.out" | cut -d' ' -f2),  $(grep -m1 '^registered' "$WORK/server$n.out" | cut -d' ' -f2)"
done
if command -v etcdctl >/dev/null; then
  info "etcdctl get --prefix /nodes/:"
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ETCD_PORT" get --prefix /nodes/ | sed 's/^/      /'
fi

# ---- 5. sluice ----------------------------------------------------------------------------------
step "5. sluice in front (examples/hello-cluster/sluice.yaml, ports replaced)"
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:0/" -e "s/127\.0\.0\.1:9901/127.0.0.1:0/" \
    -e "s/127\.0\.0\.1:2379/127.0.0.1:$ETCD_PORT/" "$HERE/sluice.yaml" >"$WORK/sluice.yaml"
"$SLUICE" -t -c "$WORK/sluice.yaml" >/dev/null
"$SLUICE" -c "$WORK/sluice.yaml" >"$WORK/sluice.out" 2>"$WORK/sluice.err" &
PIDS+=($!)
SLUICE_PID=$!
wait_line "$WORK/sluice.err" 'listening name=grpc address=' "$SLUICE_PID" 60 sluice
wait_line "$WORK/sluice.err" 'admin listening address=' "$SLUICE_PID" 60 sluice
GRPC_PORT=$(grep -Eom1 'listening name=grpc address=127\.0\.0\.1:[0-9]+' "$WORK/sluice.err" | sed 's/.*://')
ADMIN_PORT=$(grep -Eom1 'admin listening address=127\.0\.0\.1:[0-9]+' "$WORK/sluice.err" | sed 's/.*://')
info "gRPC through sluice: 127.0.0.1:$GRPC_PORT   status page: http://127.0.0.1:$ADMIN_PORT/"

backends() {  # addresses sluice has in the cluster, one per line
  curl -sf "http://127.0.0.1:$ADMIN_PORT/status" | python3 -c '
import json, sys
for c in json.load(sys.stdin)["clusters"]:
    if c["name"] == "hello":
        for b in c["backends"]:
            print(b["address"], b["state"])'
}
for _ in $(seq 300); do
  [[ $(backends 2>/dev/null | wc -l) -eq 3 ]] && break
  sleep 0.1
done
info "sluice discovered from etcd:"
backends | sed 's/^/      /'

# ---- 6. calls -----------------------------------------------------------------------------------
step "6. $CALLS calls on ONE gRPC channel through sluice (each call balanced on its own)"
"$CLIENT" --target "127.0.0.1:$GRPC_PORT" --calls "$CALLS" --each || true

# ---- 7. failover --------------------------------------------------------------------------------
VICTIM=${SERVER_PIDS[1]}
VICTIM_ID=$(grep -m1 '^listening' "$WORK/server2.out" | awk '{print $4}')
step "7. kill -9 server 2 ($VICTIM_ID): its key stays until the lease expires, sluice stops using it at once"
{ kill -KILL "$VICTIM"; wait "$VICTIM"; } 2>/dev/null || true
"$CLIENT" --target "127.0.0.1:$GRPC_PORT" --calls "$CALLS" --each || true
for _ in $(seq $(((TTL + 10) * 10))); do
  [[ $(backends 2>/dev/null | wc -l) -eq 2 ]] && break
  sleep 0.1
done
info "after the lease expired, sluice has:"
backends | sed 's/^/      /'

if [[ "${KEEP:-0}" == 1 ]]; then
  step "running; Ctrl-C stops everything"
  info "calls:       $CLIENT --target 127.0.0.1:$GRPC_PORT --calls 30 --each"
  info "status page: http://127.0.0.1:$ADMIN_PORT/"
  while kill -0 "$SLUICE_PID" 2>/dev/null; do sleep 1; done
fi
step "done"
