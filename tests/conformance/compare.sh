#!/usr/bin/env bash
# HTTP/1.1 conformance of sluice next to nginx: both proxy the same two upstreams and
# tests/conformance/h1probe.py sends them the same raw requests (sluice is the subject, nginx
# the baseline).
#
#   tests/conformance/compare.sh
#
# Environment (all optional):
#   BUILD_DIR=build    where sluice (and sluice-demo-backend) are already built; nothing is built
#                      here (relative paths are taken from the repository root)
#   UPSTREAM=echo      echo: two tests/conformance/echo_upstream.py, which answer the way the
#                      upstream-dependent cases expect (echoed bodies, /echo, /cookie);
#                      demo: two sluice-demo-backend
#   DIRECT=0           1: also probe the first upstream directly, as a third column (with the
#                      echo upstream that adds about 90 s: it waits out requests it cannot frame)
#   JSON=FILE          also write every result there
#   FAIL_IF_WORSE=1    exit 1 when sluice does worse than nginx on a scored case
#   ONLY=ID[,ID...]    run only these cases (a trailing * matches a prefix)
#   PROBE_TIMEOUT=600  seconds the probe may run (a full run takes about 70 s)
#
# Prints the probe's per-case table, the counts (scored / unscored PASS, WARN, FAIL per target),
# the cases where sluice does worse than nginx and the cases sluice does not PASS. Everything it
# starts runs in a temporary directory and is stopped on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/conformance"
py=/usr/bin/python3

BUILD_DIR="${BUILD_DIR:-$root/build}"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$root/$BUILD_DIR"
UPSTREAM="${UPSTREAM:-echo}"
DIRECT="${DIRECT:-0}"
JSON="${JSON:-}"
FAIL_IF_WORSE="${FAIL_IF_WORSE:-0}"
ONLY="${ONLY:-}"
PROBE_TIMEOUT="${PROBE_TIMEOUT:-600}"

log() { echo "conformance: $*" >&2; }
die() { echo "conformance: error: $*" >&2; exit 1; }

[[ "$UPSTREAM" == echo || "$UPSTREAM" == demo ]] || die "UPSTREAM must be echo or demo"
[[ "$DIRECT" == 0 || "$DIRECT" == 1 ]] || die "DIRECT must be 0 or 1"
[[ "$FAIL_IF_WORSE" == 0 || "$FAIL_IF_WORSE" == 1 ]] || die "FAIL_IF_WORSE must be 0 or 1"
[[ "$PROBE_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "PROBE_TIMEOUT must be a positive integer"

# ---- dependencies ----------------------------------------------------------------------------
[[ -x "$py" ]] || die "$py is missing"
for tool in curl timeout; do command -v "$tool" >/dev/null || die "$tool is missing"; done
nginx_bin="$(command -v nginx || true)"; [[ -n "$nginx_bin" ]] || nginx_bin=/usr/sbin/nginx
[[ -x "$nginx_bin" ]] || die "nginx is missing: run 'bash scripts/install-deps.sh --bench'"
sluice_bin="$BUILD_DIR/sluice"
backend_bin="$BUILD_DIR/sluice-demo-backend"
build_hint="set BUILD_DIR, or build it first, e.g.
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  ninja -C build sluice sluice-demo-backend"
[[ -x "$sluice_bin" ]] || die "$sluice_bin is missing: $build_hint"
[[ "$UPSTREAM" == echo || -x "$backend_bin" ]] || die "$backend_bin is missing: $build_hint"

# ---- process bookkeeping ---------------------------------------------------------------------
tmp="$(mktemp -d /tmp/sluice-conformance.XXXXXX)"
chmod 755 "$tmp"
pids=()

# shellcheck source=../bench/procs.sh
source "$root/tests/bench/procs.sh"  # stop_pid, wait_for_http

nginx_workers=()
cleanup() {
  local rc=$? i w
  trap - EXIT INT TERM
  # Reverse order: the proxies before the upstreams they talk to.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
  # nginx's master stops its workers on SIGTERM; one that outlived it is stopped here.
  for w in "${nginx_workers[@]}"; do
    if [[ -r /proc/$w/cmdline ]] && tr '\0' ' ' 2>/dev/null <"/proc/$w/cmdline" |
        grep -q '^nginx: worker'; then
      log "nginx worker $w outlived its master; stopping it"
      stop_pid "$w"
    fi
  done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

show_logs() {  # FILE...: the end of each, on stderr
  local f
  for f in "$@"; do [[ -s "$f" ]] && { log "--- $f"; tail -n 20 "$f" >&2; }; done
  return 0
}

# ---- upstreams -------------------------------------------------------------------------------
upstreams=()
for id in a b; do
  out="$tmp/upstream-$id.out" err="$tmp/upstream-$id.err"
  if [[ "$UPSTREAM" == echo ]]; then
    "$py" "$here/echo_upstream.py" 0 >"$out" 2>"$err" &
  else
    "$backend_bin" --listen 127.0.0.1:0 --id "$id" >"$out" 2>"$err" &
  fi
  pids+=("$!")
  for _ in $(seq 100); do
    grep -q '^listening ' "$out" && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  addr="$(sed -n 's/^listening //p' "$out")"
  if [[ -z "$addr" ]] || ! wait_for_http "http://$addr/" "${pids[-1]}"; then
    show_logs "$err"
    die "upstream $id ($UPSTREAM) did not start"
  fi
  upstreams+=("$addr")
  log "upstream $id ($UPSTREAM): pid ${pids[-1]}, $addr"
done

# ---- sluice ----------------------------------------------------------------------------------
mkdir -p "$tmp/sluice"
cat >"$tmp/sluice/sluice.yaml" <<EOF
workers: 1
log: {access: {path: off}}
listeners:
  - {name: web, address: 127.0.0.1:0, routes: [{match: {path_prefix: /}, cluster: web}]}
clusters:
  - {name: web, policy: round_robin, endpoints: [${upstreams[0]}, ${upstreams[1]}]}
EOF
"$sluice_bin" -c "$tmp/sluice/sluice.yaml" >"$tmp/sluice/out.log" 2>"$tmp/sluice/err.log" &
sluice_pid=$!
pids+=("$sluice_pid")
sluice_port=""
for _ in $(seq 200); do
  sluice_port="$(sed -n 's/.*listening name=web address=127\.0\.0\.1:\([0-9]*\).*/\1/p' \
                   "$tmp/sluice/err.log" | head -n1)"
  [[ -n "$sluice_port" ]] && break
  kill -0 "$sluice_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$sluice_port" ]] || ! wait_for_http "http://127.0.0.1:$sluice_port/" "$sluice_pid"; then
  show_logs "$tmp/sluice/err.log" "$tmp/sluice/out.log"
  die "sluice did not start"
fi
log "sluice: $sluice_bin, pid $sluice_pid, port $sluice_port"

# ---- nginx -----------------------------------------------------------------------------------
nginx_dir="$tmp/nginx"
mkdir -p "$nginx_dir/temp"
nginx_port="$(free_port)"
user=""
if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
cat >"$nginx_dir/nginx.conf" <<EOF
$user
worker_processes 1;
pid $nginx_dir/nginx.pid;
error_log $nginx_dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $nginx_dir/temp/body;
  proxy_temp_path $nginx_dir/temp/proxy;
  fastcgi_temp_path $nginx_dir/temp/fastcgi;
  uwsgi_temp_path $nginx_dir/temp/uwsgi;
  scgi_temp_path $nginx_dir/temp/scgi;
  upstream web {
    server ${upstreams[0]};
    server ${upstreams[1]};
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
"$nginx_bin" -p "$nginx_dir" -e "$nginx_dir/error.log" -c "$nginx_dir/nginx.conf" \
  -g 'daemon off; master_process on;' >"$nginx_dir/out.log" 2>&1 &
nginx_pid=$!
pids+=("$nginx_pid")
if ! wait_for_http "http://127.0.0.1:$nginx_port/" "$nginx_pid"; then
  show_logs "$nginx_dir/error.log" "$nginx_dir/out.log"
  die "nginx did not start"
fi
mapfile -t nginx_workers < <(pgrep -P "$nginx_pid" 2>/dev/null || true)
nginx_version="$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //')"
log "nginx: $nginx_version, pid $nginx_pid (workers: ${nginx_workers[*]:-?}), port $nginx_port"

# ---- the probe -------------------------------------------------------------------------------
args=(--target "sluice=$sluice_port" --target "nginx=$nginx_port")
[[ "$DIRECT" == 0 ]] || args+=(--target "upstream=${upstreams[0]##*:}")
[[ -z "$JSON" ]] || args+=(--json "$JSON")
[[ "$FAIL_IF_WORSE" == 0 ]] || args+=(--fail-if-worse)
[[ -z "$ONLY" ]] || args+=(--only "$ONLY")

direct_note=""
[[ "$DIRECT" == 0 ]] || direct_note="; 'upstream' is the first upstream, not proxied"
echo "HTTP/1.1 conformance: sluice (subject) vs $nginx_version (baseline), both round robin over"
echo "two $UPSTREAM upstreams$direct_note."
echo "Cases and verdicts follow the Http11Probe catalogue; sc: S = scored, u = unscored."
echo
# In the background, so that INT and TERM are handled at once (bash runs a trap only after the
# foreground command has finished); cleanup stops it like the rest.
timeout "$PROBE_TIMEOUT" "$py" "$here/h1probe.py" "${args[@]}" &
probe_pid=$!
pids+=("$probe_pid")
rc=0
wait "$probe_pid" || rc=$?
case "$rc" in
  0) ;;
  1) log "sluice is worse than nginx on a scored case" ;;
  124) log "the probe did not finish within ${PROBE_TIMEOUT} s" ;;
  *) log "the probe failed (exit status $rc)" ;;
esac
[[ -z "$JSON" || ! -s "$JSON" ]] || log "JSON=$JSON"
exit "$rc"
