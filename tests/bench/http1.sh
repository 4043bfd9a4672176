#!/usr/bin/env bash
# HTTP/1.1 reverse-proxy benchmark: sluice vs nginx vs HAProxy, same upstreams, same workers.
#
#   tests/bench/http1.sh
#
# Environment (all optional):
#   DURATION=10s  CONNECTIONS=64  RUNS=3  WARMUP=2s   wrk settings (each run is bounded)
#   WORKERS="1 2"          worker counts to compare
#   IDLE_CONNS=2000        idle keep-alive connections for the memory measurement (0: skip)
#   SKIP_SLUICE=1 SKIP_NGINX=1 SKIP_HAPROXY=1          leave a proxy out
#   BUILD_DIR=build-bench  where sluice is built (Release)
#   RESULTS=FILE           also keep the raw results there
#
# Prints a table (median req/s, median p50/p99 latency, idle-connection memory, median requests
# per CPU-second of the proxy's processes during each run) and the ratios sluice/nginx and
# sluice/haproxy, then the same as markdown for docs/performance.md. Requests per CPU-second is
# the per-core figure; req/s also depends on how much of the shared cores the load generator
# and the upstreams get.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/bench"
py=/usr/bin/python3
util="$here/bench_util.py"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
RUNS="${RUNS:-3}"
WARMUP="${WARMUP:-2s}"
WORKERS="${WORKERS:-1 2}"
IDLE_CONNS="${IDLE_CONNS:-2000}"
SKIP_SLUICE="${SKIP_SLUICE:-0}"
SKIP_NGINX="${SKIP_NGINX:-0}"
SKIP_HAPROXY="${SKIP_HAPROXY:-0}"
BUILD_DIR="${BUILD_DIR:-$root/build-bench}"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$root/$BUILD_DIR"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
[[ "$IDLE_CONNS" =~ ^[0-9]+$ ]] || die "IDLE_CONNS must be a number"
for w in $WORKERS; do [[ "$w" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must list positive integers"; done

# ---- dependencies and build ------------------------------------------------------------------
"$root/scripts/install-deps.sh" --bench >&2
for tool in wrk curl; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[[ -x "$py" ]] || die "$py is missing"
nginx_bin="$(command -v nginx || true)"; [[ -n "$nginx_bin" ]] || nginx_bin=/usr/sbin/nginx
haproxy_bin="$(command -v haproxy || true)"; [[ -n "$haproxy_bin" ]] || haproxy_bin=/usr/sbin/haproxy
[[ "$SKIP_NGINX" == 1 || -x "$nginx_bin" ]] || die "nginx is missing"
[[ "$SKIP_HAPROXY" == 1 || -x "$haproxy_bin" ]] || die "haproxy is missing"

targets=(sluice-demo-backend)
[[ "$SKIP_SLUICE" == 1 ]] || targets+=(sluice)
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring $BUILD_DIR (Release)"
  cmake -S "$root" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >&2
fi
log "building ${targets[*]}"
ninja -C "$BUILD_DIR" -j2 "${targets[@]}" >&2
backend_bin="$BUILD_DIR/sluice-demo-backend"
sluice_bin="$BUILD_DIR/sluice"

# Many idle connections: every process started below inherits the raised limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
[[ "$fd_limit" =~ ^[0-9]+$ ]] || fd_limit=65536
# HAProxy needs about two descriptors per connection and refuses to start above the limit.
haproxy_maxconn=$(( (fd_limit - 256) / 2 ))
((haproxy_maxconn <= 20000)) || haproxy_maxconn=20000
((IDLE_CONNS + CONNECTIONS + 100 <= haproxy_maxconn)) ||
  die "descriptor limit $fd_limit is too low for IDLE_CONNS=$IDLE_CONNS"

# ---- process bookkeeping ---------------------------------------------------------------------
tmp="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
chmod 755 "$tmp"
pids=()

# shellcheck source=procs.sh
source "$root/tests/bench/procs.sh"  # stop_pid, wait_for_http

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
  local keep=() p
  for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# ---- upstreams -------------------------------------------------------------------------------
backends=()
for id in a b c; do
  out="$tmp/backend-$id.out"
  "$backend_bin" --listen 127.0.0.1:0 --id "$id" >"$out" 2>"$tmp/backend-$id.err" &
  pids+=("$!")
  for _ in $(seq 100); do
    grep -q '^listening ' "$out" && break
    kill -0 "${pids[-1]}" 2>/dev/null || die "demo backend $id failed: $(cat "$tmp/backend-$id.err")"
    sleep 0.1
  done
  addr="$(sed -n 's/^listening //p' "$out")"
  [[ -n "$addr" ]] || die "demo backend $id did not start"
  backends+=("$addr")
done
log "upstreams: ${backends[*]}"

# ---- proxy configurations --------------------------------------------------------------------
write_sluice_conf() {  # DIR WORKERS
  local dir=$1 w=$2 eps="" b
  for b in "${backends[@]}"; do eps+="${eps:+, }$b"; done
  cat >"$dir/sluice.yaml" <<EOF
workers: $w
log: {access: {path: off}}
listeners:
  - {name: web, address: 127.0.0.1:0, routes: [{match: {path_prefix: /}, cluster: web}]}
clusters:
  - {name: web, policy: round_robin, endpoints: [$eps]}
EOF
}

write_nginx_conf() {  # DIR WORKERS PORT
  local dir=$1 w=$2 port=$3 servers="" b user=""
  for b in "${backends[@]}"; do servers+="    server $b;"$'\n'; done
  if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
  mkdir -p "$dir/nginx-temp"
  cat >"$dir/nginx.conf" <<EOF
$user
worker_processes $w;
worker_rlimit_nofile $fd_limit;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $dir/nginx-temp/body;
  proxy_temp_path $dir/nginx-temp/proxy;
  fastcgi_temp_path $dir/nginx-temp/fastcgi;
  uwsgi_temp_path $dir/nginx-temp/uwsgi;
  scgi_temp_path $dir/nginx-temp/scgi;
  upstream web {
$servers    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

write_haproxy_conf() {  # DIR WORKERS PORT
  local dir=$1 w=$2 port=$3 servers="" i=0 b
  for b in "${backends[@]}"; do servers+="  server s$i $b"$'\n'; i=$((i + 1)); done
  cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread $w
  maxconn $haproxy_maxconn
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 75s
  http-reuse always
frontend web
  bind 127.0.0.1:$port
  default_backend web
backend web
  balance roundrobin
$servers
EOF
}

# Starts PROXY with WORKERS; sets proxy_pid, proxy_port, proxy_children (1: measure children).
start_proxy() {
  local proxy=$1 w=$2 dir="$tmp/$1-$2"
  rm -rf "$dir"; mkdir -p "$dir"; chmod 755 "$dir"
  proxy_children=0
  case "$proxy" in
    sluice)
      write_sluice_conf "$dir" "$w"
      "$sluice_bin" -c "$dir/sluice.yaml" >"$dir/out.log" 2>"$dir/err.log" &
      proxy_pid=$!
      proxy_port=""
      for _ in $(seq 200); do
        proxy_port="$(sed -n 's/.*listening name=web address=127\.0\.0\.1:\([0-9]*\).*/\1/p' \
                        "$dir/err.log" | head -n1)"
        [[ -n "$proxy_port" ]] && break
        kill -0 "$proxy_pid" 2>/dev/null || break
        sleep 0.1
      done
      ;;
    nginx)
      proxy_port="$("$py" "$util" free-port)"
      write_nginx_conf "$dir" "$w" "$proxy_port"
      "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off; master_process on;' \
        >"$dir/out.log" 2>"$dir/err.log" &
      proxy_pid=$!
      proxy_children=1
      ;;
    haproxy)
      proxy_port="$("$py" "$util" free-port)"
      write_haproxy_conf "$dir" "$w" "$proxy_port"
      "$haproxy_bin" -f "$dir/haproxy.cfg" -db >"$dir/out.log" 2>"$dir/err.log" &
      proxy_pid=$!
      ;;
  esac
  pids+=("$proxy_pid")
  if [[ -z "$proxy_port" ]] || ! wait_for_http "http://127.0.0.1:$proxy_port/" "$proxy_pid"; then
    log "$proxy did not start; its output:"
    cat "$dir/err.log" "$dir/out.log" "$dir/nginx-error.log" 2>/dev/null | tail -n 20 >&2
    return 1
  fi
  local body
  body="$(curl -fsS --max-time 5 "http://127.0.0.1:$proxy_port/")"
  [[ "$body" == "hello from "* ]] || { log "$proxy answered '$body'"; return 1; }
}

# ---- the runs --------------------------------------------------------------------------------
proxies=()
[[ "$SKIP_SLUICE" == 1 ]] || proxies+=(sluice)
[[ "$SKIP_NGINX" == 1 ]] || proxies+=(nginx)
[[ "$SKIP_HAPROXY" == 1 ]] || proxies+=(haproxy)
((${#proxies[@]} > 0)) || die "every proxy is skipped"

results="$tmp/results.txt"
: >"$results"
log "wrk -t1 -c$CONNECTIONS -d$DURATION, $RUNS runs each, warm-up $WARMUP; workers: $WORKERS"

declare -A port_of pid_of children_of mem_of
for w in $WORKERS; do
  # All proxies run side by side (idle while another is measured) and the runs are interleaved
  # (run 1 of each, then run 2 of each, ...), so a change in the machine's load hits all alike.
  for proxy in "${proxies[@]}"; do
    start_proxy "$proxy" "$w" || die "$proxy with $w worker(s) failed to start"
    pid_of[$proxy]=$proxy_pid
    port_of[$proxy]=$proxy_port
    children_of[$proxy]=$proxy_children
    log "$proxy, $w worker(s): pid $proxy_pid, port $proxy_port"
  done

  # Idle keep-alive memory first, on the fresh processes.
  for proxy in "${proxies[@]}"; do
    mem_of[$proxy]="-"
    ((IDLE_CONNS > 0)) || continue
    for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:${port_of[$proxy]}/"; done
    flag=""; ((children_of[$proxy])) && flag="--children"
    if line="$("$py" "$util" idle-mem "${port_of[$proxy]}" "$IDLE_CONNS" "${pid_of[$proxy]}" $flag)"
    then
      read -r mem before after <<<"$line"
      mem_of[$proxy]=$mem
      log "  $proxy idle: RSS ${before} KiB -> ${after} KiB for $IDLE_CONNS connections"
    else
      log "  $proxy: idle memory measurement failed"
    fi
  done

  for proxy in "${proxies[@]}"; do
    wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "http://127.0.0.1:${port_of[$proxy]}/" >/dev/null
  done
  for r in $(seq "$RUNS"); do
    for proxy in "${proxies[@]}"; do
      f="$tmp/$proxy-$w/wrk-$r.txt"
      flag=""; ((children_of[$proxy])) && flag="--children"
      cpu0="$("$py" "$util" cpu-seconds "${pid_of[$proxy]}" $flag)"
      wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:${port_of[$proxy]}/" >"$f"
      cpu1="$("$py" "$util" cpu-seconds "${pid_of[$proxy]}" $flag)"
      # The proxy's CPU seconds during the run: requests per CPU-second, the per-core figure.
      "$py" -c "print('%.2f' % ($cpu1 - $cpu0))" >"$f.cpu"
      log "  run $r $proxy: $(grep -E 'Requests/sec' "$f" | tr -s ' ')"
    done
  done

  for proxy in "${proxies[@]}"; do
    read -r rps p50 p99 errors rpc <<<"$("$py" "$util" wrk-median "$tmp/$proxy-$w"/wrk-*.txt)"
    ((errors == 0)) || log "  WARNING: $errors errors (non-2xx or socket errors) in $proxy runs"
    echo "$proxy $w $rps $p50 $p99 $errors ${mem_of[$proxy]} $rpc" >>"$results"
    stop_pid "${pid_of[$proxy]}"
    forget_pid "${pid_of[$proxy]}"
  done
done

[[ -z "${RESULTS:-}" ]] || cp "$results" "$RESULTS"
echo
echo "HTTP/1.1 proxy benchmark: wrk -t1 -c$CONNECTIONS -d$DURATION --latency, median of $RUNS runs;"
echo "three demo upstreams (round robin, upstream keep-alive); idle memory over $IDLE_CONNS connections."
echo "$(uname -srm), $(nproc) CPU(s); load generator, proxy and upstreams share the machine."
echo
"$py" "$util" report "$results"
