#!/usr/bin/env bash
# CPU and memory of the generator process alone (ffmpeg excluded) while live at 1280x720@30.
#
#   ./scripts/bench-generator.sh [seconds]     default 30 s of measurement after 5 s of warm-up
#
# Reads utime+stime (fields 14 and 15 of /proc/<pid>/stat: the process's own threads, not its
# children) at the start and end of the window, and VmRSS/VmHWM from /proc/<pid>/status.
# Targets: <= 3 % of one core, <= 30 MB RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
WARMUP=5
cargo build --release -p hlsmark --bin hlsmark >&2
BIN=$PWD/target/release/hlsmark
TMP=$(mktemp -d)
trap 'kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT

RUST_LOG=info NO_COLOR=1 "$BIN" generate --data-dir "$TMP" --width 1280 --height 720 --fps 30 \
  --segment-duration 1s --realtime true 2>"$TMP/generator.log" &
PID=$!
HZ=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
sleep "$WARMUP"
kill -0 "$PID" || { echo "generator died:"; cat "$TMP/generator.log"; exit 1; }
C0=$(cpu); T0=$(date +%s.%N)
sleep "$SECS"
C1=$(cpu); T1=$(date +%s.%N)
RSS=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$PID/status")
FF=$(pgrep -P "$PID" ffmpeg | head -1 || true)
FFCPU=""
if [[ -n "$FF" ]]; then
  FFCPU=$(awk -v hz="$HZ" -v secs="$SECS" '{ printf "%.0f", ($14 + $15) / hz }' "/proc/$FF/stat")
fi
kill -TERM "$PID"
wait "$PID" && STATUS=0 || STATUS=$?
SEGS=$(ls "$TMP/hls/live/"*.m4s | wc -l)
awk -v c0="$C0" -v c1="$C1" -v t0="$T0" -v t1="$T1" -v hz="$HZ" -v rss="$RSS" -v hwm="$HWM" \
    -v segs="$SEGS" -v status="$STATUS" -v ffcpu="$FFCPU" 'BEGIN {
  cpu = (c1 - c0) / hz / (t1 - t0) * 100
  printf "generator 1280x720@30 live for %.1f s: CPU %.2f %% of one core (target <= 3 %%), RSS %.1f MB (peak %.1f MB, target <= 30 MB)\n", t1 - t0, cpu, rss / 1024, hwm / 1024
  printf "segments written: %d; exit status after SIGTERM: %d; ffmpeg CPU time so far (not counted): %s s\n", segs, status, ffcpu
}'
LAG=$(grep -o 'max_publish_lag_ms: [0-9]*' "$TMP/generator.log" | tail -1 || true)
echo "segment publish lag (ffmpeg's last write -> store queue), worst: ${LAG#max_publish_lag_ms: } ms (target <= 100 ms)"
