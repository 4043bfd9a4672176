#!/usr/bin/env bash
# gRPC unary benchmark: sluice vs nginx (grpc_pass) vs HAProxy (h2), same 3 Hello backends.
#
#   tests/bench/grpc.sh
#
# h2load sends prepared hello.Hello/SayHello calls over h2c (-c CLIENTS -m STREAMS); each proxy
# gets RUNS runs of REQUESTS calls after a warm-up run; the median calls/s is reported with the
# ratios sluice/nginx and sluice/haproxy.
#
# Environment (all optional):
#   REQUESTS=50000 CLIENTS=10 STREAMS=10 RUNS=3 WORKERS=1
#   SKIP_NGINX=1 SKIP_HAPROXY=1
#   BUILD_DIR=build-bench-grpc  (Release, with SLUICE_TESTS for the Hello server)
#   SLUICE_BIN=PATH             a sluice binary to measure instead of $BUILD_DIR/sluice
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQUESTS="${REQUESTS:-50000}"
CLIENTS="${CLIENTS:-10}"
STREAMS="${STREAMS:-10}"
RUNS="${RUNS:-3}"
WORKERS="${WORKERS:-1}"
SKIP_NGINX="${SKIP_NGINX:-0}"
SKIP_HAPROXY="${SKIP_HAPROXY:-0}"
BUILD_DIR="${BUILD_DIR:-$root/build-bench-grpc}"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$root/$BUILD_DIR"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
for v in REQUESTS CLIENTS STREAMS RUNS WORKERS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
command -v h2load >/dev/null || die "h2load (nghttp2-client) is missing"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"

if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring $BUILD_DIR (Release)"
  cmake -S "$root" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=ON >&2
fi
ninja -C "$BUILD_DIR" -j2 sluice sluice-hello-server >&2

work="$(mktemp -d /tmp/sluice-bench-grpc.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on port $1"
}

# ---- backends --------------------------------------------------------------------------------
backends=()
for id in a b c; do
  "$BUILD_DIR/tests/sluice-hello-server" --id "$id" >"$work/hello-$id.out" 2>"$work/hello-$id.err" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q '^listening' "$work/hello-$id.out" && break; sleep 0.1; done
  backends+=("$(awk '/^listening/ {print $2; exit}' "$work/hello-$id.out")")
done
log "backends: ${backends[*]}"

# hello.HelloRequest{name: "bench"} as one gRPC message.
printf '\x00\x00\x00\x00\x07\x0a\x05bench' >"$work/body.bin"

# ---- proxies ---------------------------------------------------------------------------------
sluice_port="$(free_port)"
{
  echo "workers: $WORKERS"
  echo "log: { level: warn, access: { path: \"off\" } }"
  echo "listeners:"
  echo "  - { name: grpc, address: 127.0.0.1:$sluice_port, protocol: http, routes: [ { match: { path_prefix: / }, cluster: hello } ] }"
  echo "clusters:"
  echo "  - name: hello"
  echo "    protocol: h2c"
  echo "    endpoints: [ ${backends[0]}, ${backends[1]}, ${backends[2]} ]"
} >"$work/sluice.yaml"
"${SLUICE_BIN:-$BUILD_DIR/sluice}" -c "$work/sluice.yaml" >"$work/sluice.out" 2>"$work/sluice.err" &
pids+=($!)
wait_port "$sluice_port"

declare -A ports=([sluice]="$sluice_port")
if [[ "$SKIP_NGINX" != 1 ]]; then
  nginx_port="$(free_port)"
  mkdir -p "$work/nginx"
  {
    echo "worker_processes $WORKERS; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; keepalive_requests 10000000; client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;"
    echo "  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;"
    echo "  upstream hello { server ${backends[0]}; server ${backends[1]}; server ${backends[2]}; keepalive 64; }"
    echo "  server { listen 127.0.0.1:$nginx_port http2; location / { grpc_pass grpc://hello; } } }"
  } >"$work/nginx.conf"
  "$nginx_bin" -c "$work/nginx.conf" -e "$work/nginx/error.log" &
  pids+=($!)
  wait_port "$nginx_port"
  ports[nginx]="$nginx_port"
fi
if [[ "$SKIP_HAPROXY" != 1 ]]; then
  haproxy_port="$(free_port)"
  {
    echo "global"
    echo "  nbthread $WORKERS"
    echo "defaults"
    echo "  mode http"
    echo "  timeout connect 5s"
    echo "  timeout client 60s"
    echo "  timeout server 60s"
    echo "frontend grpc"
    echo "  bind 127.0.0.1:$haproxy_port proto h2"
    echo "  default_backend hello"
    echo "backend hello"
    echo "  balance roundrobin"
    i=0
    for b in "${backends[@]}"; do echo "  server s$i $b proto h2"; i=$((i + 1)); done
  } >"$work/haproxy.cfg"
  "$haproxy_bin" -f "$work/haproxy.cfg" -db >"$work/haproxy.out" 2>&1 &
  pids+=($!)
  wait_port "$haproxy_port"
  ports[haproxy]="$haproxy_port"
fi

# ---- runs ------------------------------------------------------------------------------------
run_h2load() {  # port requests → calls/s (0 when any call failed)
  local out
  out="$(h2load -n "$2" -c "$CLIENTS" -m "$STREAMS" -d "$work/body.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1/hello.Hello/SayHello" 2>&1)"
  local ok failed rate
  ok="$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")"
  failed="$(sed -n 's/^requests: .*succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1+\2/p' <<<"$out")"
  rate="$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")"
  if [[ "$ok" != "$2" ]]; then log "port $1: $ok of $2 succeeded ($failed failed+errored)"; echo 0; return; fi
  echo "$rate"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Runs are interleaved (sluice, nginx, haproxy, sluice, ...) so that a change in the machine's
# load during the benchmark hits every proxy alike.
declare -A result rates
names=()
for name in sluice nginx haproxy; do [[ -n "${ports[$name]:-}" ]] && names+=("$name"); done
for name in "${names[@]}"; do run_h2load "${ports[$name]}" "$((REQUESTS / 5))" >/dev/null; done  # warm-up
for r in $(seq 1 "$RUNS"); do
  for name in "${names[@]}"; do
    rate="$(run_h2load "${ports[$name]}" "$REQUESTS")"
    rates[$name]="${rates[$name]:-} $rate"
    log "$name run $r: $rate calls/s"
  done
done
for name in "${names[@]}"; do
  # shellcheck disable=SC2086
  result[$name]="$(median ${rates[$name]})"
done

echo
echo "gRPC unary calls/s (h2load -n $REQUESTS -c $CLIENTS -m $STREAMS, median of $RUNS, workers $WORKERS)"
for name in sluice nginx haproxy; do
  [[ -n "${result[$name]:-}" ]] && printf '  %-8s %10.0f\n' "$name" "${result[$name]}"
done
for name in nginx haproxy; do
  if [[ -n "${result[$name]:-}" && "${result[$name]}" != 0 ]]; then
    printf '  sluice/%s = %.2f\n' "$name" "$(echo "${result[sluice]} / ${result[$name]}" | bc -l)"
  fi
done
