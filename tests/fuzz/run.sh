#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz and runs each one in turn.
#
#   tests/fuzz/run.sh [SECONDS] [--update-corpus] [TARGET...]
#
# SECONDS: time per target (default 60). TARGET: request_head, response_head, chunked, config,
# etcd (default: all). Each target starts from a temporary copy of tests/fuzz/corpus/<target>;
# with --update-corpus the inputs that reach new code are added to it (-merge=1 and
# cover.py, at most 150 files).
# A crash, a hang past 10 s or more than 2 GB of memory stops that target: the input is kept in
# build-fuzz/artifacts/<target>/ and the script exits 1 after the other targets ran.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${SLUICE_FUZZ_BUILD:-$root/build-fuzz}
seconds=60
update=0
targets=()
all_targets=(request_head response_head chunked config etcd)

for arg in "$@"; do
  case $arg in
    --update-corpus) update=1 ;;
    ''|*[!0-9]*)
      if [[ " ${all_targets[*]} " == *" $arg "* ]]; then
        targets+=("$arg")
      else
        echo "usage: $0 [SECONDS] [--update-corpus] [TARGET...]  (targets: ${all_targets[*]})" >&2
        exit 2
      fi ;;
    *) seconds=$arg ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

# Largest input tried, per target: a head or a chunked body past a few KiB exercises nothing new
# (the parsers' limits are tested with small ones), a configuration file is larger.
declare -A max_len=([request_head]=4096 [response_head]=4096 [chunked]=4096 [config]=16384
                    [etcd]=4096)
declare -A dict=([request_head]=http.dict [response_head]=http.dict [chunked]=chunked.dict
                 [config]=config.dict [etcd]=etcd.dict)

if [[ ! -f $build/build.ninja ]]; then
  CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$root" -B "$build" -G Ninja \
    -DSLUICE_FUZZ=ON -DSLUICE_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
fi
ninja -C "$build" $(printf '%s_fuzz ' "${targets[@]}") >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/logs"

failed=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/${t}_fuzz
  corpus=$work/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp "$here/corpus/$t/." "$corpus/" -r
  log=$build/logs/$t.log
  echo "== $t: ${seconds}s (log: $log)"
  rc=0
  # The target's own directory as working directory: relative paths in a configuration resolve
  # there, and nothing it might write lands in the source tree.
  (cd "$work" && "$bin" "$corpus" -dict="$here/dict/${dict[$t]}" -max_len="${max_len[$t]}" \
     -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
     -artifact_prefix="$artifacts/") >"$log" 2>&1 || rc=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed 's/^/   /' || true
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "   FAILED (exit $rc):"
    grep -E 'ERROR: |SUMMARY: |invariant violated|runtime error' "$log" | head -5 | sed 's/^/   /' || true
    grep -E '^(artifact_prefix|Test unit written to)' "$log" | sed 's/^/   reproducer: /' || true
    continue
  fi
  if [[ $update -eq 1 ]]; then
    # The features every input reaches (edges, not hit counts), the committed corpus first, then
    # a greedy cover of what this run found on top of it, up to 150 files (cover.py).
    before=$(ls "$here/corpus/$t" | wc -l)
    mkdir -p "$work/$t.base"
    cp "$here/corpus/$t/." "$work/$t.base/" -r
    (cd "$work" && "$bin" -merge=1 -use_counters=0 -merge_control_file="$work/$t.ctl" \
       -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 "$work/$t.base" "$corpus") \
       >"$log.merge" 2>&1
    "$here/cover.py" "$work/$t.ctl" $((before < 150 ? 150 - before : 0)) | while read -r f; do
      cp "$f" "$here/corpus/$t/$(sha1sum <"$f" | cut -c1-40)"
    done
    after=$(ls "$here/corpus/$t" | wc -l)
    echo "   corpus: $before -> $after files, $(cat "$here/corpus/$t"/* | wc -c) bytes"
  fi
done
exit $failed
