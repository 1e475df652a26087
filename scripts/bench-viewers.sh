#!/usr/bin/env bash
# Viewer load: N LL-HLS viewers that behave like hls.js (hlsmark-loadgen) against `hlsmark run`,
# then the same number of plain-HLS viewers against the same server and against nginx serving
# the same files. Prints, per run, the part (segment) delay p50/p99/max, the viewers that fell
# behind, the server's CPU (share of one core) and RSS; one JSON line per run at the end.
#
#   ./scripts/bench-viewers.sh [viewers] [seconds]      default 1000 viewers, 30 s measured
#   COUNTS="250 500 1000" ./scripts/bench-viewers.sh     LL runs at several counts (plain at N)
#   BASELINE_BIN=/path/to/old/hlsmark ...                also the LL runs on an older binary, right
#                                                        after each current one (memory before/after)
#   HLSMARK_BIN=/path/to/hlsmark LOADGEN_BIN=...         use these binaries (no build)
#   PLAIN=0 / NGINX=0                                    skip the plain / nginx runs
#   SOURCE=generator                                     the generator (720p encode) instead of the clip
#
# The stream: a 1080p30 H.264 clip at 4 Mbit/s (made once by ffmpeg), `--video copy`, 1 s
# segments, 200 ms parts: parts of 80-100 KB, as a camera gives. The server (and its ffmpeg, and
# nginx) runs on core 1, the viewers on core 0 (taskset), both at nice -20 (their sessions'
# autogroups too) when root, so on a shared 2-core machine neither starves the other and other
# work waits. Each run: 5 s ramp, 2 s settle, N seconds measured,
# 3 s for the last parts; bounded by `timeout`. What "delay" means: crates/loadgen/src/stats.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
SECS=${2:-30}
COUNTS=${COUNTS:-$N}
PLAIN=${PLAIN:-1}
NGINX=${NGINX:-1}
SOURCE=${SOURCE:-clip}
if [[ -z ${LOADGEN_BIN:-} ]]; then
  cargo build --release --quiet -p hlsmark-loadgen
  LOADGEN_BIN=$PWD/${CARGO_TARGET_DIR:-target}/release/hlsmark-loadgen
fi
if [[ -z ${HLSMARK_BIN:-} ]]; then
  cargo build --release --quiet -p hlsmark
  HLSMARK_BIN=$PWD/${CARGO_TARGET_DIR:-target}/release/hlsmark
fi
BIN=$HLSMARK_BIN
LOADGEN=$LOADGEN_BIN
TMP=$(mktemp -d /tmp/hlsmark-viewers.XXXXXX)
# nginx's workers run as `nobody` when it is started as root: they must read the files.
chmod 755 "$TMP"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
# Two viewer connections each, plus the server's: raise the descriptor limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NICE=()
[[ $(id -u) == 0 ]] && NICE=(nice -n -20)
# With the kernel's autogroups (sched_autogroup_enabled), nice only ranks processes of one
# session: a session gets its CPU share against every other session whatever its processes' nice.
# So the server, nginx and the viewers each start in a session of their own (setsid), and that
# session's autogroup gets nice -20 (root only; otherwise they run as they are).
boost() {
  [[ $(id -u) == 0 ]] || return 0
  # Only once setsid has made the new session (before, the old session's autogroup would get it).
  for _ in $(seq 50); do
    [[ $(awk '{ print $6 }' "/proc/$1/stat" 2>/dev/null) == "$1" ]] && break
    sleep 0.02
  done
  { echo -20 >"/proc/$1/autogroup"; } 2>/dev/null || true
}
SERVER_CPU=(taskset -c 1 "${NICE[@]}")
CLIENT_CPU=(taskset -c 0 "${NICE[@]}")
[[ $(nproc) -lt 2 ]] && { SERVER_CPU=("${NICE[@]}"); CLIENT_CPU=("${NICE[@]}"); }

CLIP=${CLIP:-target/bench-viewers-clip.mp4}
if [[ $SOURCE == clip && ! -s $CLIP ]]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 -t 20 \
    -c:v libx264 -preset veryfast -b:v 4M -maxrate 4M -bufsize 4M -g 30 -keyint_min 30 \
    -sc_threshold 0 -pix_fmt yuv420p "$CLIP"
fi
if [[ $SOURCE == clip ]]; then SRC=(--source "$PWD/$CLIP" --video copy); else SRC=(--width 1280 --height 720); fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server BIN DIR PORT: `hlsmark run` on core 1; sets SPID; waits for a playlist with parts.
start_server() {
  local bin=$1 dir=$2 port=$3
  mkdir -p "$dir"
  setsid "${SERVER_CPU[@]}" "$bin" run --data-dir "$dir/data" --stream live --listen "127.0.0.1:$port" \
    "${SRC[@]}" --segment-duration 1s --part-duration 200ms --live-window 30 \
    >"$dir/hlsmark.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  boost "$SPID"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/hls/live/index.m3u8" 2>/dev/null | grep -q 'EXT-X-PART:' && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "hlsmark did not publish parts within 10 s:" >&2
  tail -20 "$dir/hlsmark.log" >&2
  exit 1
}

stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# load LABEL MODE COUNT PORT PIDS: one loadgen run (client on core 0); its JSON line to $TMP/results.
load() {
  local label=$1 mode=$2 count=$3 port=$4 pids=$5
  echo "== $label: $count $mode viewers, ${SECS} s; CPU pressure: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)" >&2
  setsid timeout $((SECS + 60)) "${CLIENT_CPU[@]}" "$LOADGEN" --url "http://127.0.0.1:$port/hls/live/index.m3u8" \
    --viewers "$count" --mode "$mode" --seconds "${SECS}s" --pid "$pids" --label "$label" >"$TMP/one" &
  local lp=$!
  boost "$lp"
  wait "$lp" || true
  tee -a "$TMP/results" <"$TMP/one"
}

# ll_run BIN LABEL COUNT: a fresh server, COUNT LL viewers, its RSS before and after.
ll_run() {
  local bin=$1 label=$2 count=$3 dir=$TMP/$2-$3 port
  port=$(free_port)
  start_server "$bin" "$dir" "$port"
  sleep 2
  echo "$label: server RSS before the viewers $(awk '/^VmRSS/ { print $2 / 1024 " MB" }' "/proc/$SPID/status")" >&2
  load "$label" ll "$count" "$port" "$SPID"
  stop "$SPID"
}

for count in $COUNTS; do
  [[ $count == 0 ]] && continue
  ll_run "$BIN" hlsmark "$count"
  [[ -n ${BASELINE_BIN:-} ]] && ll_run "$BASELINE_BIN" baseline "$count"
done

if [[ $PLAIN == 1 ]]; then
  dir=$TMP/plain
  port=$(free_port)
  start_server "$BIN" "$dir" "$port"
  sleep 2
  load hlsmark-plain plain "$N" "$port" "$SPID"
  if [[ $NGINX == 1 ]] && command -v nginx >/dev/null; then
    # nginx serves the same segment files; the playlist is hlsmark's, copied every 250 ms (the
    # plain viewers poll every 0.5-1 s), so both serve the same media at the same moments.
    nport=$(free_port)
    mkdir -p "$dir/snap/hls/live" "$dir/nginx"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path $dir/nginx; proxy_temp_path $dir/nginx; fastcgi_temp_path $dir/nginx;
  uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
  types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; video/mp4 mp4; }
  server {
    listen 127.0.0.1:$nport;
    location = /hls/live/index.m3u8 { root $dir/snap; add_header Cache-Control no-cache; }
    location /hls/ { root $dir/data; }
  }
}
EOF
    ( while kill -0 "$SPID" 2>/dev/null; do
        curl -sf "http://127.0.0.1:$port/hls/live/index.m3u8" -o "$dir/snap/hls/live/.index.m3u8" \
          && mv "$dir/snap/hls/live/.index.m3u8" "$dir/snap/hls/live/index.m3u8"
        sleep 0.25
      done ) &
    PIDS+=("$!")
    setsid "${SERVER_CPU[@]}" nginx -c "$dir/nginx.conf" -p "$dir/nginx" 2>"$dir/nginx/stderr" &
    NPID=$!
    PIDS+=("$NPID")
    boost "$NPID"
    # Its workers (their CPU is nginx's), once they are up.
    npids=""
    for _ in $(seq 50); do
      npids=$(pgrep -d, -P "$NPID" || true)
      [[ $npids == *,* ]] && break
      sleep 0.1
    done
    load nginx-plain plain "$N" "$nport" "$NPID${npids:+,$npids}"
    stop "$NPID"
  fi
  stop "$SPID"
fi

echo "== summary (delay: from a part's first listing to each viewer's last byte; 'behind': a viewer" >&2
echo "   that missed a part or had one later than 3 part targets, or 3 target durations for plain)" >&2
python3 - "$TMP/results" >&2 <<'EOF'
import json, sys
print(f"{'run':<15} {'mode':<5} {'viewers':>7} {'delay p50':>9} {'p99':>8} {'max':>8} {'1 unit':>7} {'behind':>6} {'Mbit/s':>7} {'srv CPU':>7} {'RSS MB':>7} {'client CPU':>10}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = r["delay_ms"]
    print(f"{r['label']:<15} {r['mode']:<5} {r['viewers']:>7} {d['p50']:>9.1f} {d['p99']:>8.1f} {d['max']:>8.1f} {r['unit_ms']:>7.0f} "
          f"{r['viewers_behind']:>6} {r['media_mbit_s']:>7.0f} {r['server_cpu'] or 0:>7.3f} {r['server_rss_mb_max'] or 0:>7.1f} {r['client_cpu']:>10.3f}")
EOF
