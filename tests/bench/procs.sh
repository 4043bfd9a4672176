# shellcheck shell=bash
# Process helpers shared by the benchmark and conformance scripts (sourced, not run).

# stop_pid PID: SIGTERM, up to 10 s for the process to go (a zombie child counts as gone), then
# SIGKILL; reaps it when it is a child of this shell.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_for_http URL PID: until URL answers 2xx (at most 20 s), or the process PID dies.
wait_for_http() {
  local url=$1 pid=$2
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
