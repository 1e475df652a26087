#!/usr/bin/env bash
# API benchmark on loopback, bounded in time (about 2-3 minutes plus the release build):
#   1. segment GET req/s: hlsmark serve vs nginx serving the same files, and each server's CPU
#      time per request (wrk shares the 2 cores and caps req/s; CPU per request it does not)
#   2. playlist GET req/s: hlsmark's live playlist vs nginx serving a static copy of it
#   3. /markers returning 10 of 1,000,000 markers: req/s and p99 at 32 connections
#   4. RSS of hlsmark serve with 1,000 open connections
#   5. segment GET over HTTP/2 (h2c, prior knowledge) with h2load, hlsmark vs nginx, when h2load
#      (apt-get install nghttp2-client) is there
#
#   scripts/bench-api.sh                     embedded (redb) store
#   BENCH_STORE=redis scripts/bench-api.sh   a redis-server of its own on a free port
#   BENCH_SECS=10 BENCH_MARKERS=1000000      run length per wrk run, markers loaded
#   BENCH_SIZE=1280x720 BENCH_ROUNDS=3       video size of the segments, alternating rounds
#   BENCH_SOURCE=generator                   segments from `hlsmark generate` (~16 KB) instead
#   BENCH_PIN=1                              servers on CPU 0, wrk on CPU 1 (steadier)
#
# Needs wrk, nginx, ffmpeg (and redis-server for BENCH_STORE=redis). Everything runs in a temp dir
# on free ports and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECS:-10}
MARKERS=${BENCH_MARKERS:-1000000}
CONNS=${BENCH_CONNS:-32}
for p in wrk nginx ffmpeg python3; do
  command -v "$p" >/dev/null || [[ -x /usr/sbin/$p ]] || { echo "bench-api: $p is required" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# The machine may be shared: as root, run the servers and wrk at a higher priority (same for
# hlsmark and nginx) so that other jobs disturb the comparison less. BENCH_NICE=0 turns it off.
NICE=()
if [[ $(id -u) -eq 0 && ${BENCH_NICE:--10} != 0 ]]; then NICE=(nice -n "${BENCH_NICE:--10}"); fi
ROUNDS=${BENCH_ROUNDS:-3}
# BENCH_PIN=1: the servers on CPU 0 and wrk (one thread) on CPU 1, so the load generator, which
# costs about as much per request as a server, does not take the servers' CPU. Much steadier
# rounds than the default (both on both cores).
PIN_SRV=()
PIN_WRK=()
WRK_THREADS=2
if [[ ${BENCH_PIN:-0} == 1 ]]; then
  command -v taskset >/dev/null || { echo "BENCH_PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  PIN_SRV=(taskset -c 0)
  PIN_WRK=(taskset -c 1)
  WRK_THREADS=1
fi

echo "== building (release)"
cargo build --release --quiet -p hlsmark --bin hlsmark -p hlsmark-api --example bench_fixture
BIN=target/release/hlsmark
FIXTURE=target/release/examples/bench_fixture

TMP=$(mktemp -d /tmp/hlsmark-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers run as an unprivileged user
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

SIZE=${BENCH_SIZE:-1280x720}
SEGDIR=$TMP/data/hls/live
mkdir -p "$SEGDIR" "$TMP/cut"
if [[ ${BENCH_SOURCE:-testsrc} == generator ]]; then
  # hlsmark's own checkerboard: compresses to ~16 KB per segment, so per-request cost dominates.
  echo "== media: 10 one-second segments from hlsmark generate (12 s of live generation)"
  SIZE=generator
  timeout -s TERM 12 "$BIN" generate --data-dir "$TMP/cut" --store "$TMP/cut/gen.redb" >/dev/null 2>&1 || true
  mv "$TMP/cut/hls/live/e0-init.mp4" "$SEGDIR/e0-init.mp4"
  for i in $(seq 0 9); do f=$(printf 'e0-%08d.m4s' "$i"); mv "$TMP/cut/hls/live/$f" "$SEGDIR/$f"; done
else
  echo "== media: 10 one-second fMP4 segments, $SIZE H.264 (ffmpeg testsrc2)"
  (cd "$TMP/cut" && ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=$SIZE:rate=30" -t 10 \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 30 -keyint_min 30 -sc_threshold 0 \
    -f hls -hls_segment_type fmp4 -hls_time 1 -hls_playlist_type vod -hls_fmp4_init_filename init.mp4 \
    -hls_segment_filename 'seg%d.m4s' out.m3u8)
  mv "$TMP/cut/init.mp4" "$SEGDIR/e0-init.mp4"
  for i in $(seq 0 9); do mv "$TMP/cut/seg$i.m4s" "$(printf '%s/e0-%08d.m4s' "$SEGDIR" "$i")"; done
fi
SEG_BYTES=$(stat -c %s "$SEGDIR"/e0-0000000*.m4s | awk '{s+=$1} END {printf "%d", s/NR}')

if [[ ${BENCH_STORE:-embedded} == redis ]]; then
  RPORT=$(free_port)
  "${NICE[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >/dev/null &
  PIDS+=($!)
  wait_port "$RPORT"
  STORE="redis://127.0.0.1:$RPORT/"
else
  STORE="$TMP/data/hlsmark.redb"
fi

echo "== loading the fixture: $MARKERS markers into $STORE"
"$FIXTURE" "$STORE" "$TMP/data" "$MARKERS"

PORT=$(free_port)
HLSMARK_STORE_PREFIX=bench RUST_LOG=warn "${PIN_SRV[@]}" "${NICE[@]}" "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" \
  --store "$STORE" --workers 2 >/dev/null &
HPID=$!
PIDS+=("$HPID")
wait_port "$PORT"

# nginx: same files, plus a static copy of the live playlist.
NPORT=$(free_port)
NPORT2=$(free_port)
mkdir -p "$TMP/nginx"
curl -sf "http://127.0.0.1:$PORT/hls/live/index.m3u8" >"$SEGDIR/static.m3u8"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  types { video/iso.segment m4s; video/mp4 mp4; application/vnd.apple.mpegurl m3u8; }
  server {
    listen 127.0.0.1:$NPORT;
    root $TMP/data;
    location /hls/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
  # HTTP/2 with prior knowledge (h2c), for h2load; hlsmark takes both on one port.
  server {
    listen 127.0.0.1:$NPORT2 http2;
    root $TMP/data;
    location /hls/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
EOF
"${PIN_SRV[@]}" "${NICE[@]}" "$NGINX" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" &
PIDS+=($!)
wait_port "$NPORT"
# The master and its workers.
NGINX_PIDS="$! $(pgrep -P "$!" | tr '\n' ' ')"

cat >"$TMP/segments.lua" <<'EOF'
local i = 0
request = function()
  i = (i + 1) % 10
  return wrk.format("GET", string.format("/hls/live/e0-%08d.m4s", i))
end
EOF
cat >"$TMP/markers.lua" <<EOF
-- 10 markers per request (one every 1/3 s of media): a random 3.3 s window of the whole range.
math.randomseed(42)
local span = math.floor($MARKERS / 3) - 4
request = function()
  local from = math.random(0, span)
  return wrk.format("GET", string.format("/markers?from=%d&to=%d.3&limit=10", from, from + 3))
end
EOF

# CPU time (user + system, clock ticks) used so far by the processes in $CPU_PIDS.
HZ=$(getconf CLK_TCK)
ticks() {
  local t=0 p
  for p in $CPU_PIDS; do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# run_wrk <url> [script] -> prints "req/s p50 p99 non2xx cpu_us": cpu_us is the server's CPU time
# per request (the processes in $CPU_PIDS), which the wrk client on the same 2 cores does not
# limit the way it limits req/s.
run_wrk() {
  local url=$1 script=${2:-}
  local args=(-t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --latency)
  [[ -n $script ]] && args+=(-s "$script")
  local t0 t1
  t0=$(ticks)
  "${PIN_WRK[@]}" "${NICE[@]}" wrk "${args[@]}" "$url" >"$TMP/wrk.out"
  t1=$(ticks)
  local rps p50 p99 errs n
  rps=$(awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$TMP/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$TMP/wrk.out")
  errs=$(awk '/Non-2xx/ {print $5}' "$TMP/wrk.out")
  n=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
  echo "$rps $p50 $p99 ${errs:-0} $(python3 -c "print(f'{($t1 - $t0) / $HZ * 1e6 / max($n, 1):.2f}')")"
}

echo "== sanity"
curl -sf "http://127.0.0.1:$PORT/markers?from=5000&to=5003.3&limit=10" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d["markers"])==10, d; print("markers per request:", len(d["markers"]))'
for base in "http://127.0.0.1:$PORT" "http://127.0.0.1:$NPORT"; do
  curl -sf -o "$TMP/seg3" "$base/hls/live/e0-00000003.m4s"
  cmp "$TMP/seg3" "$SEGDIR/e0-00000003.m4s"
done

echo "== RSS of the fresh server with 1000 open connections (each fetched the playlist)"
rss() { awk '/VmRSS/ {print $2}' "/proc/$HPID/status"; }
RSS_IDLE=$(rss)
RSS_1000=$(python3 - "$PORT" "$HPID" <<'EOF'
import socket, sys
port, pid = int(sys.argv[1]), sys.argv[2]
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /hls/live/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
for s in socks:
    assert b"200 OK" in s.recv(65536)
# All 1000 are open (keep-alive) now; read the gauge through a 1001st connection and the RSS.
m = socket.create_connection(("127.0.0.1", port))
m.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
body = b""
while chunk := m.recv(65536):
    body += chunk
gauge = [l for l in body.decode().splitlines() if l.startswith("hlsmark_open_connections ")][0].split()[1]
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]
print(rss, gauge)
EOF
)
read -r RSS_KB OPEN <<<"$RSS_1000"


# median of $ROUNDS alternating rounds (hlsmark, nginx, hlsmark, nginx, ...): the round with the
# median req/s, as "rps p50 p99 non2xx"
median() { sort -g -k1 | awk '{r[NR]=$0} END {print r[int((NR+1)/2)]}'; }
# median over rounds of (hlsmark req/s / nginx req/s), each pair run back to back
paired() { paste -d' ' "$1" "$2" | awk '{print $1/$6}' | sort -g | awk '{r[NR]=$1} END {printf "%.2f (rounds: %.2f-%.2f)", r[int((NR+1)/2)], r[1], r[NR]}'; }
: >"$TMP/h_seg"; : >"$TMP/n_seg"; : >"$TMP/h_pl"; : >"$TMP/n_pl"; : >"$TMP/h_mk"
for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS: segment GET (avg $SEG_BYTES bytes), playlist GET, /markers (10 of $MARKERS); $CONNS connections, ${SECS}s each"
  CPU_PIDS=$HPID run_wrk "http://127.0.0.1:$PORT" "$TMP/segments.lua" >>"$TMP/h_seg"
  CPU_PIDS=$NGINX_PIDS run_wrk "http://127.0.0.1:$NPORT" "$TMP/segments.lua" >>"$TMP/n_seg"
  CPU_PIDS=$HPID run_wrk "http://127.0.0.1:$PORT/hls/live/index.m3u8" >>"$TMP/h_pl"
  CPU_PIDS=$NGINX_PIDS run_wrk "http://127.0.0.1:$NPORT/hls/live/static.m3u8" >>"$TMP/n_pl"
  CPU_PIDS=$HPID run_wrk "http://127.0.0.1:$PORT" "$TMP/markers.lua" >>"$TMP/h_mk"
done
cat "$TMP"/h_seg "$TMP"/n_seg "$TMP"/h_pl "$TMP"/n_pl "$TMP"/h_mk | sed 's/^/  wrk: /'
read -r H_SEG H_SEG50 H_SEG99 H_SEGE _ < <(median <"$TMP/h_seg")
read -r N_SEG N_SEG50 N_SEG99 N_SEGE _ < <(median <"$TMP/n_seg")
read -r H_PL H_PL50 H_PL99 H_PLE _ < <(median <"$TMP/h_pl")
read -r N_PL N_PL50 N_PL99 N_PLE _ < <(median <"$TMP/n_pl")
read -r H_MK H_MK50 H_MK99 H_MKE _ < <(median <"$TMP/h_mk")
RSS_END=$(rss)
METRICS=$(curl -sf "http://127.0.0.1:$PORT/metrics")
SERVED=$(awk '/^hlsmark_files_served_total / {print $2}' <<<"$METRICS")
CACHED=$(awk '/^hlsmark_open_files / {print $2}' <<<"$METRICS")
# median CPU microseconds per request of a results file
cpu() { awk '{print $5}' "$1" | sort -g | awk '{r[NR]=$1} END {print r[int((NR+1)/2)]}'; }
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }

# HTTP/2: h2load -c$CONNS connections x 10 streams each, every segment in turn; req/s of the
# median of $ROUNDS alternating rounds.
H2_NOTE="(-c$CONNS -m10, h2c prior knowledge)"
if command -v h2load >/dev/null; then
  h2() {
    local urls=() i
    for i in $(seq 0 9); do urls+=("$1/hls/live/$(printf 'e0-%08d.m4s' "$i")"); done
    "${PIN_WRK[@]}" "${NICE[@]}" h2load -t"$WRK_THREADS" -c"$CONNS" -m10 -D"$SECS" "${urls[@]}" 2>/dev/null |
      awk '/^finished in/ {gsub(",", "", $4); print $4}'
  }
  : >"$TMP/h_h2"; : >"$TMP/n_h2"
  for r in $(seq "$ROUNDS"); do
    h2 "http://127.0.0.1:$PORT" >>"$TMP/h_h2"
    h2 "http://127.0.0.1:$NPORT2" >>"$TMP/n_h2"
  done
  sed 's/^/  h2load hlsmark: /' "$TMP/h_h2"; sed 's/^/  h2load nginx: /' "$TMP/n_h2"
  H2_H=$(sort -g "$TMP/h_h2" | awk '{r[NR]=$1} END {print r[int((NR+1)/2)]}')
  H2_N=$(sort -g "$TMP/n_h2" | awk '{r[NR]=$1} END {print r[int((NR+1)/2)]}')
  H2_RATIO=$(ratio "$H2_H" "$H2_N")
else
  H2_NOTE="(h2load not installed: apt-get install nghttp2-client)"
fi
cat <<EOF

hlsmark API benchmark ($(date -u +%FT%TZ), $(nproc) cores, load average $LOAD, ${NICE[*]:-no nice})
wrk -t$WRK_THREADS -c$CONNS -d${SECS}s, median of $ROUNDS alternating rounds; store: ${BENCH_STORE:-embedded}; $([[ ${BENCH_PIN:-0} == 1 ]] && echo "servers pinned to CPU 0, wrk to CPU 1" || echo "servers and wrk share all cores")
metric                              hlsmark        nginx          ratio  target
segment GET req/s ($SIZE, ${SEG_BYTES} B) $H_SEG    $N_SEG    $(ratio "$H_SEG" "$N_SEG")   >= 0.8
segment GET, paired rounds          ratio $(paired "$TMP/h_seg" "$TMP/n_seg")
segment GET p99                     $H_SEG99         $N_SEG99
segment GET server CPU us/request   $(cpu "$TMP/h_seg")           $(cpu "$TMP/n_seg")           $(ratio "$(cpu "$TMP/n_seg")" "$(cpu "$TMP/h_seg")")   (nginx / hlsmark: requests per CPU second)
segment answers                     $SERVED (from memory: $CACHED files held)
playlist GET req/s                  $H_PL    $N_PL    $(ratio "$H_PL" "$N_PL")   >= 1.0
playlist GET, paired rounds         ratio $(paired "$TMP/h_pl" "$TMP/n_pl")
playlist GET p99                    $H_PL99         $N_PL99
playlist GET server CPU us/request  $(cpu "$TMP/h_pl")           $(cpu "$TMP/n_pl")           $(ratio "$(cpu "$TMP/n_pl")" "$(cpu "$TMP/h_pl")")
/markers 10 of $MARKERS req/s     $H_MK
/markers p50 / p99                  $H_MK50 / $H_MK99                       p99 <= 5 ms
segment GET over h2c (h2load)       ${H2_H:-n/a}    ${H2_N:-n/a}    ${H2_RATIO:-n/a}   $H2_NOTE
non-2xx answers (seg/pl/markers)    $H_SEGE/$H_PLE/$H_MKE
RSS fresh: idle / $OPEN open conns $((RSS_IDLE / 1024)) MB / $((RSS_KB / 1024)) MB                      <= 64 MB
RSS after the load runs             $((RSS_END / 1024)) MB (includes the store's page cache when embedded)
EOF
