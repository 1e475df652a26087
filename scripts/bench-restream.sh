#!/usr/bin/env bash
# CPU of a restream target in copy mode (target: <= 2 % of a core for 1080p30 at 4 Mbit/s), in
# one run (about 1.5 minutes plus the release build and the clip):
#   make a 1080p30 H.264 file at 4 Mbit/s with AAC (ffmpeg, 20 s, looped by hlsmark), start a
#   local nginx-rtmp (libnginx-mod-rtmp) on a free port in a temp dir, then twice run
#   `hlsmark run --source FILE --video copy --preview-fps 0` (release): once without a target,
#   once with `--restream rtmp://127.0.0.1:PORT/live/benchkey`. After a warm-up, sample from
#   /proc every second for BENCH_SECS (30): the restream ffmpeg's CPU and hlsmark's own CPU.
#   Prints medians of 5 s windows (and the worst window, the mean) in % of one core, and
#   hlsmark's extra CPU with the target.
#
#   scripts/bench-restream.sh                 30 s per run
#   BENCH_SECS=60 scripts/bench-restream.sh   longer
#   HLSMARK_BIN=path                          a binary to use instead of building
#
# The restream ffmpeg copies video and audio (no decode, no encode): its CPU is demuxing fMP4
# from the pipe and muxing FLV onto the socket. The stream's own ffmpeg (copy) is not counted.
# CPU is read in clock ticks (10 ms): on a busy 2-core machine, run it twice and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECS:-30}
WARMUP=${BENCH_WARMUP:-8}
for p in ffmpeg ffprobe nginx curl python3; do
  command -v "$p" >/dev/null || { echo "bench-restream: $p is required" >&2; exit 1; }
done
MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so
[[ -f $MODULE ]] || { echo "bench-restream: $MODULE is missing (apt-get install libnginx-mod-rtmp)" >&2; exit 1; }

if [[ -z ${HLSMARK_BIN:-} ]]; then
  echo "== building (release)"
  cargo build --release --quiet -p hlsmark
  HLSMARK_BIN=target/release/hlsmark
fi

TMP=$(mktemp -d /tmp/hlsmark-restream.XXXXXX)
PID=
NGINX=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null || true
  [[ -n $NGINX ]] && kill "$NGINX" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== making a 1080p30 4 Mbit/s H.264 + AAC clip (20 s)"
CLIP=$TMP/clip-1080p30.mp4
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset ultrafast -b:v 4M -maxrate 4M -bufsize 8M -g 60 -pix_fmt yuv420p \
  -c:a aac -b:a 128k -ac 2 -movflags +faststart -y "$CLIP"

RTMP_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<CONF
load_module $MODULE;
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log info;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:$RTMP_PORT; chunk_size 4096; application live { live on; } } }
CONF
nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stderr.log" 2>&1 &
NGINX=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$RTMP_PORT") 2>/dev/null && break; sleep 0.1; done

# sample PID... : CPU of each pid (% of one core) over SECS, read every second; prints per pid
# "median-of-5s-windows max-5s-window mean" (a 10 ms tick is 0.2 % of a 5 s window; per-second
# samples would be quantised to 1 %).
sample() {
  python3 - "$SECS" "$@" <<'PY'
import os, sys, time
secs = int(sys.argv[1]); pids = sys.argv[2:]
hz = os.sysconf("SC_CLK_TCK")
def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])
prev = [ticks(p) for p in pids]; t0 = time.monotonic(); per = [[] for _ in pids]
for _ in range(secs):
    time.sleep(1)
    now = [ticks(p) for p in pids]; t1 = time.monotonic()
    for i in range(len(pids)):
        per[i].append(100.0 * (now[i] - prev[i]) / hz / (t1 - t0))
    prev, t0 = now, t1
for v in per:
    w = sorted(sum(v[i:i + 5]) / 5 for i in range(0, len(v) - 4, 5))
    print("%.2f %.2f %.2f" % (w[len(w) // 2], w[-1], sum(v) / len(v)))
PY
}

declare -A HL
for mode in without with; do
  port=$(free_port)
  dir=$TMP/$mode
  mkdir -p "$dir"
  args=(run --data-dir "$dir/data" --stream live --listen "127.0.0.1:$port" --source "$CLIP" --video copy
        --preview-fps 0 --segment-duration 2s)
  [[ $mode == with ]] && args+=(--restream "rtmp://127.0.0.1:$RTMP_PORT/live/benchkey")
  "$HLSMARK_BIN" "${args[@]}" >"$dir/hlsmark.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 120); do
    n=$(curl -fs "http://127.0.0.1:$port/hls/live/index.m3u8" 2>/dev/null | grep -c '^#EXTINF' || true)
    [[ ${n:-0} -ge 2 ]] && break
    kill -0 "$PID" 2>/dev/null || { echo "hlsmark exited:"; tail -20 "$dir/hlsmark.log"; exit 1; }
    sleep 0.25
  done
  pids=("$PID")
  if [[ $mode == with ]]; then
    for _ in $(seq 1 120); do
      curl -fs "http://127.0.0.1:$port/streams" | grep -q '"state":"connected"' && break
      sleep 0.25
    done
    RPID=$(pgrep -P "$PID" -f -- '-f flv' | head -1 || true)
    [[ -n $RPID ]] || { echo "bench-restream: no restream ffmpeg found"; tail -20 "$dir/hlsmark.log"; exit 1; }
    echo "== the ingest sees: $(timeout 15 ffprobe -v error -show_entries stream=codec_name,width,height -of csv=p=0 "rtmp://127.0.0.1:$RTMP_PORT/live/benchkey" | tr '\n' ' ')"
    pids+=("$RPID")
  fi
  sleep "$WARMUP"
  echo "== $mode a restream target: sampling ${SECS} s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  mapfile -t out < <(sample "${pids[@]}")
  HL[$mode]=${out[0]}
  echo "hlsmark CPU $mode the target: median ${out[0]%% *} % of a core (max 5 s window, mean: ${out[0]#* })"
  if [[ $mode == with ]]; then
    RF=${out[1]}
    echo "restream ffmpeg CPU (copy, 1080p30 4 Mbit/s + AAC): median ${RF%% *} % of a core (max 5 s window, mean: ${RF#* }); target <= 2 %"
    curl -fs "http://127.0.0.1:$port/streams" | python3 -c 'import json,sys; t=json.load(sys.stdin)["streams"][0]["restream"][0]; print("target:", t["target"], t["state"], "%.1f MB, %.1f s sent, %d restarts, %d dropped fragments" % (t["bytes_sent"]/1e6, t["seconds_sent"], t["restarts"], t["dropped_fragments"]))'
  fi
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
done
python3 -c 'import sys; a=float(sys.argv[1].split()[0]); b=float(sys.argv[2].split()[0]); print("hlsmark extra CPU with one target: %+.2f %% of a core (median %.2f without, %.2f with)" % (b - a, a, b))' "${HL[without]}" "${HL[with]}"
