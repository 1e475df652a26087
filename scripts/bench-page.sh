#!/usr/bin/env bash
# Page-source benchmark (issue 15): what a `page:` source costs at 1280x720, 15 fps, and how
# steady its frame rate is, for two local pages:
#   raf     a canvas animated with requestAnimationFrame (repaints all the time: ideally no frame
#           is a repeat; repeats show where the browser could not keep up with 15 fps);
#   tick    a big counter and the background colour changing every 100 ms (10 new pictures a
#           second: at 15 fps a third of the frames are repeats by design).
#
#   ./scripts/bench-page.sh [rounds] [seconds]     default 3 rounds, 30 s measured per case
#   HLSMARK_BIN=/path/to/hlsmark ./scripts/bench-page.sh    a given (release) binary, no build
#
# CPU: utime+stime from /proc/<pid>/stat over the window (after WARMUP s of warm-up once the
# stream is live) of hlsmark itself, its ffmpeg, and every process of the browser's process group
# (main, zygotes, GPU/utility, renderers), in % of one core. Memory: sampled every 2 s over the
# window, the median of the sums over hlsmark + ffmpeg + the browser group of RSS (shared pages
# counted once per process, an upper bound) and of PSS (shared pages split: the honest total).
# Repeats: the share of frames written into ffmpeg that repeat the previous picture, from the
# attempt's "page capture ended" line (hlsmark's own count, exact). Medians over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-30}
WARMUP=5
for p in ffmpeg chromium curl python3; do
  command -v "$p" >/dev/null || { echo "bench-page needs $p (./scripts/test.sh installs it)" >&2; exit 1; }
done
if [[ -n "${HLSMARK_BIN:-}" ]]; then
  BIN=$HLSMARK_BIN
else
  cargo build --release --locked -p hlsmark --bin hlsmark >&2
  BIN=$PWD/${CARGO_TARGET_DIR:-target}/release/hlsmark
fi
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
PID=""
WEB=""
cleanup() {
  if [[ -n "$PID" ]]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [[ -n "$WEB" ]]; then kill "$WEB" 2>/dev/null || true; wait "$WEB" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The pages, served by a local HTTP server for the whole run.
mkdir -p "$TMP/www"
cat >"$TMP/www/raf.html" <<'EOF'
<!doctype html><html><body style="margin:0;overflow:hidden;background:#111">
<canvas id="c" width="1280" height="720"></canvas>
<script>
const c = document.getElementById("c").getContext("2d");
function draw(t) {
  c.fillStyle = `hsl(${(t / 20) % 360}, 60%, 30%)`;
  c.fillRect(0, 0, 1280, 720);
  for (let i = 0; i < 40; i++) {
    c.fillStyle = `hsl(${(i * 9 + t / 10) % 360}, 80%, 60%)`;
    c.fillRect((i * 97 + t / 3) % 1280, (i * 53 + t / 5) % 720, 80, 80);
  }
  c.fillStyle = "#fff"; c.font = "bold 120px monospace";
  c.fillText(Math.floor(t), 80, 400);
  requestAnimationFrame(draw);
}
requestAnimationFrame(draw);
</script></body></html>
EOF
cat >"$TMP/www/tick.html" <<'EOF'
<!doctype html><html><body style="margin:0;overflow:hidden;background:#c00">
<div id="n" style="font:bold 400px monospace;color:#fff;text-align:center;line-height:720px">0</div>
<script>
let n = 0; const colours = ["#c00", "#0a0", "#00c", "#cc0"];
setInterval(() => { n++; document.getElementById("n").textContent = n;
  document.body.style.background = colours[n % 4]; }, 100);
</script></body></html>
EOF
WEB_PORT=$(free_port)
python3 -m http.server "$WEB_PORT" --bind 127.0.0.1 --directory "$TMP/www" >"$TMP/web.log" 2>&1 &
WEB=$!

cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
browser_pid() { # hlsmark's chromium child (the browser's process group leader)
  local c
  for c in $(pgrep -P "$PID" || true); do
    [[ "$(cat "/proc/$c/comm" 2>/dev/null)" == chrom* ]] && { echo "$c"; return; }
  done
}
# The measured processes: hlsmark, its ffmpeg children, every member of the browser's group.
procs() {
  echo "$PID"
  pgrep -P "$PID" ffmpeg || true
  local b; b=$(browser_pid)
  [[ -n "$b" ]] && pgrep -g "$b" || true
}
cpu_sum() { local t=0 p; for p in $(procs); do t=$((t + $(cpu_of "$p"))); done; echo "$t"; }
mem_kb() { # "rss_kb pss_kb" summed over procs
  local p
  for p in $(procs); do cat "/proc/$p/smaps_rollup" 2>/dev/null || true; done |
    awk '/^Rss:/ { r += $2 } /^Pss:/ { s += $2 } END { print r + 0, s + 0 }'
}

declare -a CASES=(raf tick)
declare -A CPU RSS PSS REP HL FF BR FPS
for r in $(seq 1 "$ROUNDS"); do
  for case in "${CASES[@]}"; do
    echo "round $r/$ROUNDS: $case" >&2
    PORT=$(free_port); DIR=$TMP/$case-$r; mkdir -p "$DIR"
    RUST_LOG=warn,hlsmark_sources::page=info NO_COLOR=1 "$BIN" run --listen "127.0.0.1:$PORT" \
      --data-dir "$DIR/data" --source "page:http://127.0.0.1:$WEB_PORT/$case.html" \
      --width 1280 --height 720 --fps 15 --segment-duration 1s \
      >"$DIR/log" 2>&1 &
    PID=$!
    deadline=$(( $(date +%s) + 90 ))
    until curl -sf "http://127.0.0.1:$PORT/hls/live/index.m3u8" 2>/dev/null | grep -q '^#EXTINF'; do
      kill -0 "$PID" 2>/dev/null || { echo "hlsmark died:" >&2; tail -5 "$DIR/log" >&2; exit 1; }
      (( $(date +%s) < deadline )) || { echo "not live in 90 s:" >&2; tail -5 "$DIR/log" >&2; exit 1; }
      sleep 0.2
    done
    sleep "$WARMUP"
    h0=$(cpu_of "$PID"); f0=0; for p in $(pgrep -P "$PID" ffmpeg || true); do f0=$((f0 + $(cpu_of "$p"))); done
    c0=$(cpu_sum); t0=$(date +%s.%N)
    : >"$DIR/mem"
    end=$(( $(date +%s) + SECS ))
    while (( $(date +%s) < end )); do mem_kb >>"$DIR/mem"; sleep 2; done
    h1=$(cpu_of "$PID"); f1=0; for p in $(pgrep -P "$PID" ffmpeg || true); do f1=$((f1 + $(cpu_of "$p"))); done
    c1=$(cpu_sum); t1=$(date +%s.%N)
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    w=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    pct() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v w="$w" 'BEGIN { printf "%.1f", (b - a) / hz / w * 100 }'; }
    CPU[$case]+="$(pct "$c0" "$c1") "
    HL[$case]+="$(pct "$h0" "$h1") "
    FF[$case]+="$(pct "$f0" "$f1") "
    BR[$case]+="$(awk -v t="$(pct "$c0" "$c1")" -v h="$(pct "$h0" "$h1")" -v f="$(pct "$f0" "$f1")" 'BEGIN { printf "%.1f", t - h - f }') "
    RSS[$case]+="$(awk '{ print $1 / 1024 }' "$DIR/mem" | median) "
    PSS[$case]+="$(awk '{ print $2 / 1024 }' "$DIR/mem" | median) "
    line=$(grep 'page capture ended' "$DIR/log" | tail -1)
    REP[$case]+="$(sed -n 's/.*repeated_pct=\([0-9.]*\).*/\1/p' <<<"$line") "
    # Frames written per second of the attempt: below the rate when ffmpeg (or the machine)
    # cannot take them as fast (they queue; media time falls behind the wall clock).
    FPS[$case]+="$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
      END { if (v["secs"] > 0) printf "%.1f", v["written"] / v["secs"] }' <<<"$line") "
    echo "  $line" | sed 's/^ *[^ ]* *INFO //' >&2
  done
done

med() { printf '%s\n' $1 | median; }
echo
echo "hlsmark page source, 1280x720 15 fps, libx264 (quality 1.0), $ROUNDS rounds of $SECS s (after ${WARMUP} s live), $(nproc) cores, release build, $(chromium --version 2>/dev/null | head -1)"
for case in "${CASES[@]}"; do
  printf '%-5s CPU %5.1f %% of a core in all (hlsmark %.1f, ffmpeg %.1f, chromium %.1f; rounds: %s)\n' \
    "$case" "$(med "${CPU[$case]}")" "$(med "${HL[$case]}")" "$(med "${FF[$case]}")" "$(med "${BR[$case]}")" "${CPU[$case]}"
  printf '      memory PSS %.0f MB (RSS summed %.0f MB; rounds PSS: %s)\n' \
    "$(med "${PSS[$case]}")" "$(med "${RSS[$case]}")" "${PSS[$case]}"
  printf '      repeated frames %.1f %% (rounds: %s); frames written %.1f a second, target 15 (rounds: %s)\n' \
    "$(med "${REP[$case]}")" "${REP[$case]}" "$(med "${FPS[$case]}")" "${FPS[$case]}"
done
