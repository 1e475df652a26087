#!/usr/bin/env bash
# Exact clips from the archive, alone and under load (about 3 minutes plus the release build):
#   1. `hlsmark generate` writes BENCH_ARCHIVE (75) seconds of archive as fast as ffmpeg encodes
#      (the generator at BENCH_SIZE, 1280x720, 30 fps, with its tone: AAC too), then `hlsmark run`
#      on the same data dir streams live on (a new epoch) on a free port.
#   2. One 60 s clip (`/clips/live.mp4?from=5&to=65`), BENCH_ROUNDS (7) times with curl: time to
#      first byte and total, medians; ffprobe checks one (duration 60.000000, no error).
#   3. BENCH_VIEWERS (100) LL-HLS viewers (scripts/viewers.py) for BENCH_SECS (20) seconds alone,
#      then again with BENCH_CLIPS (10) 60 s clips cut at once in the middle of the run: hlsmark's
#      CPU (its own process, ffmpeg apart, from /proc) in each run and over the clips' window, the
#      clips' totals (median, max), and the viewers' part delays and stalls in both runs.
# Targets: first byte <= 200 ms, total far below real time, viewers not starved by the clips.
#
#   scripts/bench-clips.sh
#   BENCH_SIZE=640x360 BENCH_VIEWERS=50 scripts/bench-clips.sh   lighter
#   BENCH_SOURCE=noise scripts/bench-clips.sh                    camera-sized segments (6 Mbit/s)
#   BENCH_CLIP_MBPS=0 scripts/bench-clips.sh                     clips unpaced (default 40 Mbit/s each)
#   BENCH_CLIP_SLOTS=8 scripts/bench-clips.sh                    the server's default clip slots
#   HLSMARK_BIN=path                                             a binary to use instead of building
#
# Every process started here is killed on exit; every request has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${BENCH_ROUNDS:-7}
VIEWERS=${BENCH_VIEWERS:-100}
CLIPS=${BENCH_CLIPS:-10}
SECS=${BENCH_SECS:-20}
SIZE=${BENCH_SIZE:-1280x720}
ARCHIVE=${BENCH_ARCHIVE:-75}
# Clip slots of the server (--clip-max-concurrent): by default all BENCH_CLIPS are cut at once;
# set it lower (the server's default is 8) to see the rest answered 503 too_many_clips.
SLOTS=${BENCH_CLIP_SLOTS:-$CLIPS}
# Send rate of one clip (--clip-max-mbps), Mbit/s; 0: as fast as curl takes it.
MBPS=${BENCH_CLIP_MBPS:-40}
# generator: the checkerboard (compresses to ~35 KB a second); noise: a camera-like 6 Mbit/s
# H.264 + AAC file (testsrc2 with grain, made by ffmpeg first) copied as a file source, paced:
# ~750 KB segments, and the archive takes BENCH_ARCHIVE seconds of real time to record.
SOURCE=${BENCH_SOURCE:-generator}
W=${SIZE%x*}
H=${SIZE#*x}
if ((ARCHIVE < CLIPS + 61)); then echo "bench-clips: BENCH_ARCHIVE must be at least BENCH_CLIPS + 61 s" >&2; exit 1; fi
for p in ffmpeg ffprobe curl python3 bc; do command -v "$p" >/dev/null || { echo "bench-clips: $p is required" >&2; exit 1; }; done

if [[ -z ${HLSMARK_BIN:-} ]]; then
  echo "== building (release)"
  cargo build --release --quiet -p hlsmark
  HLSMARK_BIN=target/release/hlsmark
fi

TMP=$(mktemp -d /tmp/hlsmark-clips.XXXXXX)
PID=
CURLS=()
cleanup() {
  for c in "${CURLS[@]}"; do kill "$c" 2>/dev/null || true; done
  if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

GEN=(--width "$W" --height "$H" --tone --preview-fps 0 --event-mean 5s --retention 1h)
t0=$(date +%s.%N)
if [[ $SOURCE == noise ]]; then
  echo "== archive: ${ARCHIVE} s of a ${SIZE} 6 Mbit/s file (copied, paced)"
  ffmpeg -v error -nostdin -f lavfi -i "testsrc2=size=${SIZE}:rate=30,noise=alls=25:allf=t" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$((ARCHIVE + 2))" -c:v libx264 -preset ultrafast \
    -g 30 -b:v 6M -maxrate 6M -bufsize 12M -pix_fmt yuv420p -c:a aac "$TMP/noise.mp4"
  GEN=(--source "$TMP/noise.mp4" --video copy --preview-fps 0 --retention 1h)
  "$HLSMARK_BIN" generate --data-dir "$TMP" --loop false "${GEN[@]}" >"$TMP/generate.log" 2>&1
else
  echo "== archive: ${ARCHIVE} s of ${SIZE} (generate, not paced)"
  "$HLSMARK_BIN" generate --data-dir "$TMP" --realtime false --stop-after "${ARCHIVE}s" "${GEN[@]}" >"$TMP/generate.log" 2>&1
fi
echo "   made in $(echo "$(date +%s.%N) - $t0" | bc) s; $(du -sh "$TMP/hls/live" | cut -f1) on disk ($(find "$TMP/hls/live" -name 'e0-*.m4s' ! -name '*.p*' | wc -l) segments)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=warn "$HLSMARK_BIN" run --data-dir "$TMP" --listen "127.0.0.1:$PORT" --clip-max-concurrent "$SLOTS" --clip-max-mbps "$MBPS" "${GEN[@]}" >"$TMP/run.log" 2>&1 &
PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do
  curl -sf --max-time 2 "$BASE/hls/live/index.m3u8" 2>/dev/null | grep -q '^#EXT-X-DISCONTINUITY' && break
  sleep 0.2
done
curl -sf --max-time 2 "$BASE/hls/live/index.m3u8" >/dev/null || { echo "bench-clips: hlsmark run did not come up" >&2; tail "$TMP/run.log" >&2; exit 1; }
echo "== hlsmark run (pid $PID) live on port $PORT"

CLIP="$BASE/clips/live.mp4?from=5&to=65"
echo "== one 60 s clip, $ROUNDS rounds"
: >"$TMP/single"
for r in $(seq "$ROUNDS"); do
  curl -s --max-time 60 -o "$TMP/clip.mp4" -w '%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n' "$CLIP" | tee -a "$TMP/single"
done
awk '$4 != 200 {bad++} END {if (bad) {print "bench-clips: " bad " clip answers were not 200"; exit 1}}' "$TMP/single"
dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$TMP/clip.mp4")
errs=$(ffprobe -v error -show_streams "$TMP/clip.mp4" 2>&1 >/dev/null | wc -l)
echo "   ffprobe: duration ${dur} s, ${errs} error lines; $(awk '{print $3}' "$TMP/single" | head -1) bytes"
ttfb=$(awk '{print $1 * 1000}' "$TMP/single" | median)
total=$(awk '{print $2 * 1000}' "$TMP/single" | median)
echo "   first byte p50 ${ttfb} ms, total p50 ${total} ms (real time: 60000 ms)"

viewers() { # $1 = label; in the background, its pid in VP
  python3 scripts/viewers.py --url "$BASE/hls/live/index.m3u8" -n "$VIEWERS" -t "$SECS" --ramp 2 --procs 2 >"$TMP/viewers-$1.json" 2>"$TMP/viewers-$1.err" &
  VP=$!
}

echo "== $VIEWERS viewers for $SECS s, no clips"
c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
viewers alone; wait "$VP" || true
c1=$(cpu_ticks "$PID"); t1=$(date +%s.%N)
cpu_alone=$(echo "scale=1; 100 * ($c1 - $c0) / $HZ / ($t1 - $t0)" | bc)
echo "   hlsmark CPU ${cpu_alone} % of a core; viewers: $(cat "$TMP/viewers-alone.json")"

echo "== $VIEWERS viewers for $SECS s, $CLIPS clips of 60 s at once after $((SECS / 2)) s"
c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
viewers clips
sleep $((SECS / 2 + 2))
k0=$(cpu_ticks "$PID"); s0=$(date +%s.%N)
: >"$TMP/load"
CURLS=()
for i in $(seq "$CLIPS"); do
  # Different ranges (nothing shared between the clips), all inside the archive's epoch.
  from=$i; to=$((i + 60))
  curl -s --max-time 60 -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n' \
    "$BASE/clips/live.mp4?from=$from&to=$to" >>"$TMP/load" &
  CURLS+=($!)
done
for c in "${CURLS[@]}"; do wait "$c" || true; done
CURLS=()
k1=$(cpu_ticks "$PID"); s1=$(date +%s.%N)
wait "$VP" || true
c1=$(cpu_ticks "$PID"); t1=$(date +%s.%N)
cpu_with=$(echo "scale=1; 100 * ($c1 - $c0) / $HZ / ($t1 - $t0)" | bc)
window=$(echo "($s1 - $s0) * 1000" | bc)
cpu_window=$(echo "scale=1; 100 * ($k1 - $k0) / $HZ / ($s1 - $s0)" | bc)
ok=$(awk '$4 == 200' "$TMP/load" | wc -l)
busy=$(awk '$4 == 503' "$TMP/load" | wc -l)
echo "   $ok of $CLIPS clips 200 ($busy answered 503 too_many_clips); all done in ${window} ms"
echo "   clip first byte p50 $(awk '$4 == 200 {print $1 * 1000}' "$TMP/load" | median) ms, total p50 $(awk '$4 == 200 {print $2 * 1000}' "$TMP/load" | median) ms, max $(awk '$4 == 200 {print $2 * 1000}' "$TMP/load" | sort -g | tail -1) ms"
echo "   hlsmark CPU ${cpu_with} % of a core over the run (${cpu_alone} % without clips), ${cpu_window} % during the clips' window"
echo "   viewers: $(cat "$TMP/viewers-clips.json")"
