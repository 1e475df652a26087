#!/usr/bin/env bash
# CPU and memory of the generator process alone (ffmpeg excluded) while live at 1280x720@30.
#
#   ./scripts/bench-generator.sh [seconds] [rounds]   default 30 s measured after 5 s of warm-up, 1 round
#   BASELINE_BIN=/path/to/old/hlsmark ./scripts/bench-generator.sh 20 3
#       also runs an older binary (e.g. built from an earlier commit with --target-dir elsewhere)
#       in alternating rounds on the same machine, and prints both medians and their ratio.
#   GEN_ARGS="--part-duration 0" ...   extra flags for the current binary only
#
# Reads utime+stime (fields 14 and 15 of /proc/<pid>/stat: the process's own threads, not its
# children) at the start and end of the window, and VmRSS/VmHWM from /proc/<pid>/status.
# Targets: <= 3 % of one core, <= 30 MB RSS, and not slower than the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
ROUNDS=${2:-1}
WARMUP=5
cargo build --release -p hlsmark --bin hlsmark >&2
BIN=$PWD/${CARGO_TARGET_DIR:-target}/release/hlsmark
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
PID=""
trap '[[ -n "$PID" ]] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$TMP"' EXIT

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# one BIN LABEL EXTRA...: one measured run; prints "cpu_percent rss_kb" on stdout, details on stderr.
one() {
  local bin=$1 label=$2; shift 2
  local dir=$TMP/$label-$RANDOM
  mkdir -p "$dir"
  RUST_LOG=info NO_COLOR=1 "$bin" generate --data-dir "$dir" --width 1280 --height 720 --fps 30 \
    --segment-duration 1s --realtime true "$@" 2>"$dir/generator.log" &
  PID=$!
  sleep "$WARMUP"
  kill -0 "$PID" || { echo "$label generator died:" >&2; cat "$dir/generator.log" >&2; exit 1; }
  local c0 c1 t0 t1 rss hwm
  c0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat"); t0=$(date +%s.%N)
  sleep "$SECS"
  c1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat"); t1=$(date +%s.%N)
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
  hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$PID/status")
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  local segs
  segs=$(find "$dir/hls/live" -name 'e*-????????.m4s' | wc -l)
  awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v rss="$rss" -v hwm="$hwm" \
      -v segs="$segs" -v label="$label" 'BEGIN {
    cpu = (c1 - c0) / hz / (t1 - t0) * 100
    printf "%s: 1280x720@30 live for %.1f s: CPU %.2f %% of one core, RSS %.1f MB (peak %.1f MB), %d segments\n", label, t1 - t0, cpu, rss / 1024, hwm / 1024, segs > "/dev/stderr"
    printf "%.3f %d\n", cpu, rss
  }'
  local lag
  lag=$(grep -o 'max_publish_lag_ms: [0-9]*' "$dir/generator.log" | tail -1 || true)
  [[ -n "$lag" ]] && echo "$label: worst segment publish lag ${lag#max_publish_lag_ms: } ms (target <= 100 ms)" >&2
  rm -rf "$dir"
}

: >"$TMP/new"; : >"$TMP/base"
for ((r = 1; r <= ROUNDS; r++)); do
  # shellcheck disable=SC2086
  one "$BIN" current ${GEN_ARGS:-} >>"$TMP/new"
  if [[ -n "${BASELINE_BIN:-}" ]]; then
    one "$BASELINE_BIN" baseline >>"$TMP/base"
  fi
done
NEW=$(awk '{ print $1 }' "$TMP/new" | median)
RSS=$(awk '{ print $2 }' "$TMP/new" | median)
echo "current: median CPU $NEW % of one core over $ROUNDS round(s) (target <= 3 %), RSS $(awk -v r="$RSS" 'BEGIN { printf "%.1f", r / 1024 }') MB (target <= 30 MB)"
if [[ -n "${BASELINE_BIN:-}" ]]; then
  BASE=$(awk '{ print $1 }' "$TMP/base" | median)
  awk -v n="$NEW" -v b="$BASE" 'BEGIN { printf "baseline: median CPU %.3f %%; current / baseline = %.2f (target <= 1.0)\n", b, n / b }'
fi
