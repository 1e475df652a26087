#!/usr/bin/env bash
# Glass-to-glass latency in a real browser, LL-HLS vs plain HLS, in one run (about 2.5 minutes
# plus the release build):
#   for each of LL-HLS (--part-duration 200ms) and plain HLS (--part-duration 0): start
#   `hlsmark run` (release; the generator at 1280x720, 30 fps, 1 s segments) on a free port in a
#   temp dir, open the player page in headless Debian Chromium (Playwright, no browser download),
#   let it play 5 s, then sample every 100 ms for BENCH_SECS (60) the latency the page shows: now -
#   PDT of the frame at the playhead. Prints p50/p95/max per mode, stalls, the request mix, and the
#   ratio plain/LL of the p50s. Target: LL p50 <= 1.0 s.
#
#   scripts/bench-latency.sh                 both modes, 60 s each
#   BENCH_SECS=20 scripts/bench-latency.sh   shorter
#   BENCH_MODES=ll scripts/bench-latency.sh  one mode (ll or plain)
#   BENCH_SIZE=640x360                       generator frame size (default 1280x720)
#   HLSMARK_BIN=path                         a binary to use instead of building
#   BENCH_BASE_BIN=path BENCH_MODES="ll-base ll plain"
#                                            also LL with an earlier binary (mode ll-base), in
#                                            the same run: prints LL p50 new / base
#
# The generator's PDT is the wall-clock time its frame was made, so the figure includes encoding
# (libx264 zerolatency), the segmenter, publishing, serving and the player's buffer; browser and
# server share the clock here. A machine too busy to encode in real time shows up as a latency
# that keeps growing while the player sits at the edge (`behind_edge_p50_s` small): the source
# is late, not the player. The script prints the CPU pressure (/proc/pressure/cpu) for that.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECS:-60}
MODES=${BENCH_MODES:-"ll plain"}
SIZE=${BENCH_SIZE:-1280x720}
for p in ffmpeg node; do command -v "$p" >/dev/null || { echo "bench-latency: $p is required" >&2; exit 1; }; done
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || { echo "bench-latency: chromium is required (apt-get install chromium)" >&2; exit 1; }

if [[ -z ${HLSMARK_BIN:-} ]]; then
  echo "== building (release)"
  cargo build --release --quiet -p hlsmark
  HLSMARK_BIN=target/release/hlsmark
fi
if [[ ! -d frontend/node_modules ]]; then npm --prefix frontend ci --silent; fi
npm --prefix frontend run --silent build

TMP=$(mktemp -d /tmp/hlsmark-latency.XXXXXX)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A P50
for mode in $MODES; do
  bin=$HLSMARK_BIN
  case $mode in
    ll) part=200ms ;;
    ll-base) part=200ms; bin=${BENCH_BASE_BIN:?ll-base needs BENCH_BASE_BIN} ;;
    plain) part=0 ;;
    *) echo "bench-latency: unknown mode $mode (ll, ll-base or plain)" >&2; exit 1 ;;
  esac
  port=$(free_port)
  dir=$TMP/$mode
  mkdir -p "$dir"
  "$bin" run --data-dir "$dir/data" --stream live --listen "127.0.0.1:$port" \
    --segment-duration 1s --part-duration "$part" --live-window 30 --width "${SIZE%x*}" --height "${SIZE#*x}" \
    --frontend-dir frontend/dist >"$dir/hlsmark.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 120); do
    n=$(curl -fs "http://127.0.0.1:$port/hls/live/index.m3u8" 2>/dev/null | grep -c '^#EXTINF' || true)
    [[ ${n:-0} -ge 4 ]] && break
    kill -0 "$PID" 2>/dev/null || { echo "hlsmark exited:"; tail -20 "$dir/hlsmark.log"; exit 1; }
    sleep 0.25
  done
  echo "== $mode (--part-duration $part, ${SIZE}): ${SECS} s in Chromium; CPU pressure: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
  line=$(node frontend/test/bench-latency.mjs --url "http://127.0.0.1:$port" --seconds "$SECS" --label "$mode")
  echo "$line"
  P50[$mode]=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["p50_s"]); print("latency %s: p50 %.3f s, p95 %.3f s, max %.3f s, %d samples, %d stalls" % (sys.argv[2], d["p50_s"], d["p95_s"], d["max_s"], d["samples"], d["stalls"]), file=sys.stderr)' "$line" "$mode")
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
done

if [[ -n ${P50[ll]:-} && -n ${P50[plain]:-} ]]; then
  python3 -c 'import sys; ll, pl = map(float, sys.argv[1:]); print("plain HLS p50 / LL-HLS p50 = %.2fx (LL %.3f s, plain %.3f s; target LL <= 1.0 s: %s)" % (pl / ll, ll, pl, "met" if ll <= 1.0 else "NOT met"))' "${P50[ll]}" "${P50[plain]}"
fi
if [[ -n ${P50[ll]:-} && -n ${P50[ll-base]:-} ]]; then
  python3 -c 'import sys; new, base = map(float, sys.argv[1:]); print("LL-HLS p50 new / base = %.2fx (new %.3f s, base %.3f s, %+.0f ms)" % (new / base, new, base, (new - base) * 1000))' "${P50[ll]}" "${P50[ll-base]}"
fi
