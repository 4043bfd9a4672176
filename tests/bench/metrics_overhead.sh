#!/usr/bin/env bash
# What request metrics cost: HTTP/1.1 throughput of sluice with metrics on against the same
# build with `metrics: {enabled: false}`, on the same machine at the same time.
#
#   tests/bench/metrics_overhead.sh
#
# Two sluice processes (1 worker each unless WORKERS says otherwise) run side by side in front
# of the same demo upstream; wrk -t1 measures them in turns (on, off, then off, on, ...), so a
# change in the machine's load hits both alike. Each pair of adjacent runs gives one ratio; the
# report shows every run, the medians and the median of the paired differences, for throughput
# and for the CPU time sluice spent per request (user + system, from /proc): on a busy machine
# throughput swings with the neighbours' load, CPU per request much less.
#
# Environment (all optional):
#   DURATION=10s  CONNECTIONS=64  RUNS=6  WARMUP=2s   wrk settings
#   WORKERS=1              sluice workers
#   UPSTREAM_THREADS=1     demo upstream I/O threads
#   SCRAPE_INTERVAL=0      seconds between /metrics scrapes of the metrics-on instance (0: none)
#   BUILD_DIR=build-bench  where sluice is built (Release); SLUICE_BIN=PATH uses that binary
#   MAX_OVERHEAD=          fail (exit 1) when the median paired difference exceeds this percent
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py=/usr/bin/python3

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
RUNS="${RUNS:-6}"
WARMUP="${WARMUP:-2s}"
WORKERS="${WORKERS:-1}"
UPSTREAM_THREADS="${UPSTREAM_THREADS:-1}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-0}"
MAX_OVERHEAD="${MAX_OVERHEAD:-}"
BUILD_DIR="${BUILD_DIR:-$root/build-bench}"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$root/$BUILD_DIR"

log() { echo "metrics-overhead: $*" >&2; }
die() { echo "metrics-overhead: error: $*" >&2; exit 2; }

for v in RUNS CONNECTIONS WORKERS UPSTREAM_THREADS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ "$SCRAPE_INTERVAL" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "SCRAPE_INTERVAL must be a number"
[[ -z "$MAX_OVERHEAD" || "$MAX_OVERHEAD" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "MAX_OVERHEAD must be a number"
for tool in wrk curl; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[[ -x "$py" ]] || die "$py is missing"

# ---- build -----------------------------------------------------------------------------------
targets=(sluice-demo-backend)
[[ -n "${SLUICE_BIN:-}" ]] || targets+=(sluice)
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring $BUILD_DIR (Release)"
  cmake -S "$root" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF >&2
fi
log "building ${targets[*]}"
ninja -C "$BUILD_DIR" -j2 "${targets[@]}" >&2
backend_bin="$BUILD_DIR/sluice-demo-backend"
sluice_bin="${SLUICE_BIN:-$BUILD_DIR/sluice}"
[[ -x "$sluice_bin" ]] || die "$sluice_bin is not executable"

# ---- process bookkeeping ---------------------------------------------------------------------
tmp="$(mktemp -d /tmp/sluice-metrics-overhead.XXXXXX)"
pids=()
scraper_pid=""

# shellcheck source=procs.sh
source "$root/tests/bench/procs.sh"  # stop_pid

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -z "$scraper_pid" ]] || stop_pid "$scraper_pid"
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cpu_ticks() {  # PID -> utime + stime of the whole process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

wait_for_line() {  # FILE SED-EXPRESSION PID -> prints the first match (20 s)
  local file=$1 expr=$2 pid=$3 got
  for _ in $(seq 200); do
    got="$(sed -n "$expr" "$file" 2>/dev/null | head -n1)"
    if [[ -n "$got" ]]; then echo "$got"; return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---- upstream and the two sluice instances ---------------------------------------------------
"$backend_bin" --listen 127.0.0.1:0 --id a --threads "$UPSTREAM_THREADS" \
  >"$tmp/backend.out" 2>"$tmp/backend.err" &
pids+=("$!")
upstream="$(wait_for_line "$tmp/backend.out" 's/^listening //p' "${pids[-1]}")" ||
  die "demo backend failed: $(cat "$tmp/backend.err")"
log "upstream: $upstream"

declare -A port_of pid_of admin_of
for mode in on off; do
  dir="$tmp/$mode"
  mkdir -p "$dir"
  enabled=true; [[ "$mode" == off ]] && enabled=false
  cat >"$dir/sluice.yaml" <<EOF
workers: $WORKERS
log: {access: {path: off}}
metrics: {enabled: $enabled}
admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: 127.0.0.1:0, routes: [{match: {path_prefix: /}, cluster: web}]}
clusters:
  - {name: web, policy: round_robin, endpoints: [$upstream]}
EOF
  "$sluice_bin" -c "$dir/sluice.yaml" >"$dir/out.log" 2>"$dir/err.log" &
  pid_of[$mode]=$!
  pids+=("$!")
  port_of[$mode]="$(wait_for_line "$dir/err.log" \
    's/.*listening name=web address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "${pid_of[$mode]}")" ||
    die "sluice (metrics $mode) did not start: $(tail -n 20 "$dir/err.log")"
  admin_of[$mode]="$(wait_for_line "$dir/err.log" \
    's/.*admin listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "${pid_of[$mode]}")" ||
    die "sluice (metrics $mode): no admin listener: $(tail -n 20 "$dir/err.log")"
  body="$(curl -fsS --max-time 5 "http://127.0.0.1:${port_of[$mode]}/")" ||
    die "sluice (metrics $mode) does not answer"
  [[ "$body" == "hello from "* ]] || die "sluice (metrics $mode) answered '$body'"
  want=1; [[ "$mode" == off ]] && want=0
  scrape="$(curl -fsS --max-time 5 "http://127.0.0.1:${admin_of[$mode]}/metrics")" ||
    die "metrics $mode: /metrics does not answer"
  grep -qx "sluice_metrics_enabled $want" <<<"$scrape" ||
    die "metrics $mode: sluice_metrics_enabled is not $want"
  log "metrics $mode: pid ${pid_of[$mode]}, port ${port_of[$mode]}, admin ${admin_of[$mode]}"
done

if [[ "$SCRAPE_INTERVAL" != 0 ]]; then
  (while sleep "$SCRAPE_INTERVAL"; do
     curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:${admin_of[on]}/metrics" || true
   done) &
  scraper_pid=$!
fi

# ---- the runs --------------------------------------------------------------------------------
log "wrk -t1 -c$CONNECTIONS -d$DURATION x $RUNS per mode, warm-up $WARMUP, $WORKERS worker(s)"
for mode in on off; do
  wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "http://127.0.0.1:${port_of[$mode]}/" >/dev/null
done
results="$tmp/results.txt"
: >"$results"
for r in $(seq "$RUNS"); do
  order="on off"; ((r % 2 == 0)) && order="off on"
  for mode in $order; do
    f="$tmp/$mode/wrk-$r.txt"
    t0="$(cpu_ticks "${pid_of[$mode]}")"
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:${port_of[$mode]}/" >"$f"
    t1="$(cpu_ticks "${pid_of[$mode]}")"
    rps="$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$f")"
    reqs="$(sed -n 's/^[[:space:]]*\([0-9]*\) requests in .*/\1/p' "$f")"
    errors="$(sed -n 's/.*Non-2xx or 3xx responses:[[:space:]]*\([0-9]*\).*/\1/p' "$f")"
    [[ -n "$rps" && -n "$reqs" ]] || die "no wrk result in $f: $(cat "$f")"
    echo "$r $mode $rps ${errors:-0} $reqs $((t1 - t0))" >>"$results"
    log "  run $r metrics $mode: $rps req/s, $((t1 - t0)) CPU ticks for $reqs requests"
  done
done
# The metrics-on instance counted what it served (a sanity check of the comparison itself).
scrape="$(curl -fsS --max-time 5 "http://127.0.0.1:${admin_of[on]}/metrics" || true)"
served="$(sed -n 's/^sluice_cluster_requests_total{cluster="web",code="2xx"} \(.*\)$/\1/p' <<<"$scrape")"
log "metrics-on instance counted ${served:-?} 2xx requests"

"$py" - "$results" "$MAX_OVERHEAD" "$(getconf CLK_TCK)" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tick_us = 1e6 / float(sys.argv[3])
runs = {}
errors = 0
for r, mode, rps, err, reqs, ticks in rows:
    runs.setdefault(int(r), {})[mode] = (float(rps), int(ticks) * tick_us / max(1, int(reqs)))
    errors += int(err)

def cost(on, off):  # throughput lost, in percent of the metrics-off figure
    return 100.0 * (off - on) / off

def extra(on, off):  # CPU per request added, in percent
    return 100.0 * (on - off) / off

print("run  on req/s  off req/s  throughput cost   on CPU us/req  off CPU us/req  CPU cost")
for r in sorted(runs):
    (ron, con), (roff, coff) = runs[r]["on"], runs[r]["off"]
    print("%3d  %8.0f  %9.0f  %+14.2f%%   %13.2f  %14.2f  %+7.2f%%"
          % (r, ron, roff, cost(ron, roff), con, coff, extra(con, coff)))
vals = list(runs.values())
m_ron = statistics.median(v["on"][0] for v in vals)
m_roff = statistics.median(v["off"][0] for v in vals)
m_con = statistics.median(v["on"][1] for v in vals)
m_coff = statistics.median(v["off"][1] for v in vals)
print("med  %8.0f  %9.0f  %+14.2f%%   %13.2f  %14.2f  %+7.2f%%   (of medians)"
      % (m_ron, m_roff, cost(m_ron, m_roff), m_con, m_coff, extra(m_con, m_coff)))
paired_rps = [cost(v["on"][0], v["off"][0]) for v in vals]
paired_cpu = [extra(v["on"][1], v["off"][1]) for v in vals]
print("median of the paired differences: throughput %+.2f%%, CPU per request %+.2f%% "
      "(positive: metrics cost)" % (statistics.median(paired_rps), statistics.median(paired_cpu)))
print("spread of the paired differences: throughput %+.2f%% .. %+.2f%%, CPU %+.2f%% .. %+.2f%%"
      % (min(paired_rps), max(paired_rps), min(paired_cpu), max(paired_cpu)))
if errors:
    print("WARNING: %d non-2xx responses" % errors)
limit = sys.argv[2]
if limit:
    worst = max(statistics.median(paired_rps), statistics.median(paired_cpu))
    if worst > float(limit):
        print("FAIL: metrics cost %.2f%% > %s%%" % (worst, limit))
        sys.exit(1)
EOF
