#!/usr/bin/env bash
# L4 (TCP) proxy benchmark: sluice vs HAProxy (mode tcp) vs nginx (stream), same upstream,
# same worker count.
#
#   tests/bench/tcp.sh
#
# Two measures, each the median of RUNS interleaved runs (all proxies run side by side):
#   throughput   one connection downloads BYTES from the upstream through the proxy (GiB/s)
#   conn/s       short connections (connect, 1 byte each way, close), CONCURRENCY at a time,
#                for RATE_SECONDS; also the proxy's CPU time (user+system) per connection
# Environment (all optional):
#   RUNS=3  BYTES=4294967296  RATE_SECONDS=5  CONCURRENCY=32  WORKERS=1
#   SKIP_NGINX=1 SKIP_HAPROXY=1      leave a peer out
#   BUILD_DIR=build-bench            where sluice is built (Release)
#   SLUICE_BIN=PATH                  use this sluice binary instead of building one
#   RESULTS=FILE                     also keep the raw results there
# The load tool (tests/bench/tcpbench.cpp: upstream server and clients) is compiled with g++.
# Rows: sluice with relay: auto (the default), splice and buffer, HAProxy with `option splice-auto`, nginx
# stream with proxy_buffer_size 64k (sluice's default buffer size), and the upstream directly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/bench"
py=/usr/bin/python3

RUNS="${RUNS:-3}"
BYTES="${BYTES:-4294967296}"
RATE_SECONDS="${RATE_SECONDS:-5}"
CONCURRENCY="${CONCURRENCY:-32}"
WORKERS="${WORKERS:-1}"
SKIP_NGINX="${SKIP_NGINX:-0}"
SKIP_HAPROXY="${SKIP_HAPROXY:-0}"
BUILD_DIR="${BUILD_DIR:-$root/build-bench}"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$root/$BUILD_DIR"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ "$BYTES" =~ ^[1-9][0-9]*$ ]] || die "BYTES must be a positive integer"
[[ "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive integer"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer"
[[ "$RATE_SECONDS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "RATE_SECONDS must be a number"

# ---- dependencies and builds -----------------------------------------------------------------
"$root/scripts/install-deps.sh" --bench >&2
command -v g++ >/dev/null || die "g++ is missing"
nginx_bin="$(command -v nginx || true)"; [[ -n "$nginx_bin" ]] || nginx_bin=/usr/sbin/nginx
haproxy_bin="$(command -v haproxy || true)"; [[ -n "$haproxy_bin" ]] || haproxy_bin=/usr/sbin/haproxy
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
[[ "$SKIP_NGINX" == 1 || -x "$nginx_bin" ]] || die "nginx is missing"
[[ "$SKIP_NGINX" == 1 || -f "$stream_module" ]] || die "nginx stream module missing ($stream_module; Debian: libnginx-mod-stream)"
[[ "$SKIP_HAPROXY" == 1 || -x "$haproxy_bin" ]] || die "haproxy is missing"

tmp="$(mktemp -d /tmp/sluice-bench-tcp.XXXXXX)"
chmod 755 "$tmp"
pids=()

# shellcheck source=procs.sh
source "$root/tests/bench/procs.sh"  # stop_pid

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

if [[ -n "${SLUICE_BIN:-}" ]]; then
  sluice_bin="$SLUICE_BIN"
else
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    log "configuring $BUILD_DIR (Release)"
    cmake -S "$root" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >&2
  fi
  log "building sluice"
  ninja -C "$BUILD_DIR" -j2 sluice >&2
  sluice_bin="$BUILD_DIR/sluice"
fi
[[ -x "$sluice_bin" ]] || die "no sluice binary at $sluice_bin"
tool="$tmp/tcpbench"
g++ -O2 -std=c++17 -o "$tool" "$here/tcpbench.cpp" || die "cannot build tcpbench"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
[[ "$fd_limit" =~ ^[0-9]+$ ]] || fd_limit=65536
# HAProxy needs two descriptors per connection plus pipes for splicing, and refuses to start
# above the limit.
haproxy_maxconn=$(( (fd_limit - 256) / 3 ))
((haproxy_maxconn <= 20000)) || haproxy_maxconn=20000

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {  # PORT PID: until something accepts on PORT (20 s), or PID dies
  local port=$1 pid=$2
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# ---- upstream --------------------------------------------------------------------------------
"$tool" serve >"$tmp/upstream.port" 2>"$tmp/upstream.err" &
pids+=("$!")
upstream_pid=$!
for _ in $(seq 100); do [[ -s "$tmp/upstream.port" ]] && break; sleep 0.1; done
up_port="$(head -n1 "$tmp/upstream.port")"
[[ -n "$up_port" ]] || die "upstream did not start: $(cat "$tmp/upstream.err")"
wait_port "$up_port" "$upstream_pid" || die "upstream not accepting"
log "upstream: 127.0.0.1:$up_port"

# ---- proxies ---------------------------------------------------------------------------------
start_proxy() {  # NAME -> proxy_pid, proxy_port
  local name=$1 dir="$tmp/$1"
  rm -rf "$dir"; mkdir -p "$dir"; chmod 755 "$dir"
  case "$name" in
    direct)
      proxy_pid=$upstream_pid
      proxy_port=$up_port
      return 0
      ;;
    sluice-auto|sluice-splice|sluice-buffer)
      local relay=${name#sluice-}
      cat >"$dir/sluice.yaml" <<EOF
workers: $WORKERS
log: { level: info, access: { path: "off" } }
listeners:
  - { name: t, address: 127.0.0.1:0, protocol: tcp, cluster: up, tcp: { relay: $relay } }
clusters:
  - { name: up, endpoints: [ 127.0.0.1:$up_port ] }
EOF
      "$sluice_bin" -c "$dir/sluice.yaml" >"$dir/out.log" 2>"$dir/err.log" &
      proxy_pid=$!
      proxy_port=""
      for _ in $(seq 200); do
        proxy_port="$(sed -n 's/.*listening name=t address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/err.log" | head -n1)"
        [[ -n "$proxy_port" ]] && break
        kill -0 "$proxy_pid" 2>/dev/null || break
        sleep 0.1
      done
      ;;
    haproxy)
      proxy_port="$(free_port)"
      cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread $WORKERS
  maxconn $haproxy_maxconn
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option splice-auto
frontend f
  bind 127.0.0.1:$proxy_port
  default_backend b
backend b
  server s0 127.0.0.1:$up_port
EOF
      "$haproxy_bin" -f "$dir/haproxy.cfg" -db >"$dir/out.log" 2>"$dir/err.log" &
      proxy_pid=$!
      ;;
    nginx)
      proxy_port="$(free_port)"
      local user=""
      if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
      cat >"$dir/nginx.conf" <<EOF
load_module $stream_module;
$user
worker_processes $WORKERS;
worker_rlimit_nofile $fd_limit;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 16384; }
stream {
  upstream up { server 127.0.0.1:$up_port; }
  server {
    listen 127.0.0.1:$proxy_port reuseport;
    proxy_pass up;
    proxy_buffer_size 64k;
  }
}
EOF
      "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off; master_process on;' \
        >"$dir/out.log" 2>"$dir/err.log" &
      proxy_pid=$!
      ;;
  esac
  pids+=("$proxy_pid")
  if [[ -z "$proxy_port" ]] || ! wait_port "$proxy_port" "$proxy_pid"; then
    log "$name did not start; its output:"
    cat "$dir/err.log" "$dir/out.log" "$dir/nginx-error.log" 2>/dev/null | tail -n 20 >&2
    return 1
  fi
}

stop_proxy() {
  [[ "$proxy_pid" == "$upstream_pid" ]] && return 0
  stop_pid "$proxy_pid"
  forget_pid "$proxy_pid"
}

proxies=(sluice-auto sluice-splice sluice-buffer)
[[ "$SKIP_HAPROXY" == 1 ]] || proxies+=(haproxy)
[[ "$SKIP_NGINX" == 1 ]] || proxies+=(nginx)
proxies+=(direct)

cpu_ticks() {  # PID: user+system clock ticks of PID and its direct children (nginx workers)
  local total=0 f ppid t
  for f in /proc/[0-9]*/stat; do
    read -r ppid t < <(awk '{sub(/^.*\) /, ""); print $2, $12 + $13}' "$f" 2>/dev/null) || continue
    if [[ "$f" == "/proc/$1/stat" || "$ppid" == "$1" ]]; then total=$((total + t)); fi
  done
  echo "$total"
}
hz="$(getconf CLK_TCK)"

# All proxies run side by side (each idle while another is measured) and the runs are
# interleaved, so a change in the machine's load hits every proxy alike.
results="$tmp/results.txt"
: >"$results"
log "throughput: $BYTES bytes on one connection; conn/s: $CONCURRENCY at once for ${RATE_SECONDS}s;" \
    "$RUNS interleaved runs each; $WORKERS worker(s)"
declare -A port_of pid_of tput rate cpu
for p in "${proxies[@]}"; do
  start_proxy "$p" || die "$p failed to start"
  port_of[$p]=$proxy_port
  pid_of[$p]=$proxy_pid
  "$tool" download "$proxy_port" $((256 << 20)) >/dev/null || die "$p: warm-up download failed"
  "$tool" rate "$proxy_port" 1 "$CONCURRENCY" >/dev/null
done
for r in $(seq "$RUNS"); do
  for p in "${proxies[@]}"; do
    read -r secs gibs <<<"$("$tool" download "${port_of[$p]}" "$BYTES")" || die "$p: download failed"
    log "run $r $p: ${gibs} GiB/s (${secs}s)"
    tput[$p]+=" $gibs"
  done
done
for r in $(seq "$RUNS"); do
  for p in "${proxies[@]}"; do
    sleep 1  # let TIME_WAIT sockets of the previous run settle a little
    t0="$(cpu_ticks "${pid_of[$p]}")"
    read -r cps errs <<<"$("$tool" rate "${port_of[$p]}" "$RATE_SECONDS" "$CONCURRENCY")"
    t1="$(cpu_ticks "${pid_of[$p]}")"
    us="$(awk -v d=$((t1 - t0)) -v hz="$hz" -v c="$cps" -v s="$RATE_SECONDS" \
      'BEGIN { n = c * s; printf "%.1f", (n > 0 ? d / hz / n * 1e6 : 0) }')"
    log "run $r $p: ${cps} conn/s, ${us} us CPU/conn, ${errs} errors"
    ((errs == 0)) || log "  WARNING: $errs failed connections"
    rate[$p]+=" $cps"
    cpu[$p]+=" $us"
  done
done
for p in "${proxies[@]}"; do
  echo "$p ${tput[$p]} | ${rate[$p]} | ${cpu[$p]}" >>"$results"
done

[[ -z "${RESULTS:-}" ]] || cp "$results" "$RESULTS"
echo
echo "TCP proxy benchmark: $WORKERS worker(s); median of $RUNS runs; $(uname -srm), $(nproc) CPU(s);"
echo "load tool, proxy and upstream share the machine. 'direct' is the upstream without a proxy."
echo
"$py" - "$results" <<'EOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    name, rest = line.split(" ", 1)
    t, r, c = rest.split("|")
    med = lambda s: statistics.median(map(float, s.split()))
    rows.append((name, med(t), med(r), med(c)))
ref = {n: (t, r, c) for n, t, r, c in rows}.get("haproxy")
print(f"{'proxy':<14} {'GiB/s':>8} {'conn/s':>9} {'us CPU/conn':>12} {'tput/haproxy':>13} {'conn/haproxy':>13} {'CPU/haproxy':>12}")
for n, t, r, c in rows:
    rt = f"{t / ref[0]:.2f}x" if ref else "-"
    rr = f"{r / ref[1]:.2f}x" if ref else "-"
    rc = f"{c / ref[2]:.2f}x" if ref and ref[2] else "-"
    print(f"{n:<14} {t:>8.2f} {r:>9.0f} {c:>12.1f} {rt:>13} {rr:>13} {rc:>12}")
print()
print("| proxy | throughput GiB/s | conn/s | CPU µs/conn | throughput vs HAProxy | conn/s vs HAProxy | CPU/conn vs HAProxy |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n, t, r, c in rows:
    rt = f"{t / ref[0]:.2f}×" if ref else "-"
    rr = f"{r / ref[1]:.2f}×" if ref else "-"
    rc = f"{c / ref[2]:.2f}×" if ref and ref[2] else "-"
    print(f"| {n} | {t:.2f} | {r:.0f} | {c:.1f} | {rt} | {rr} | {rc} |")
EOF
