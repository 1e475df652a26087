#!/usr/bin/env bash
# Stateless API nodes, measured (issue 17): one ingest (`hlsmark generate`, LL-HLS: 1 s segments,
# 200 ms parts) on one store, two `hlsmark serve` nodes A and B on the same store and media, and
# nginx with scale/nginx.conf in front of them. Three figures, printed and as JSON lines:
#
#  1. write -> readable on every API node: from the moment the ingest's file of a segment (or
#     part) appears in the media directory (inotify: the rename that completes it) to the moment
#     BOTH nodes have answered a blocking playlist reload listing it and a GET of its bytes
#     (the later of the two nodes); p50/p99/max over every segment and part of the window.
#     Target: p99 <= 1/4 of a segment duration (250 ms).
#  2. marker POST on A -> SSE event on B: from just before the POST is written to A until B's
#     `/markers/live` delivers it (and A's, for comparison); one marker every 100 ms.
#     Target: p99 <= 100 ms.
#  3. viewers held by two API nodes vs one, through nginx: LL viewers of hlsmark-loadgen (hls.js's
#     requests: blocking reloads + parts) at rising counts; a count is held when at most 1 % of
#     the viewers fell behind (missed a part or got one later than PART-HOLD-BACK). Each API node
#     gets the same CPU budget (a cgroup quota, NODE_CPU of one core, 0.2 by default), so the
#     nodes, not the shared machine, are what runs out: the ratio is what a second node adds.
#     1 node and 2 nodes alternate, ROUNDS times; medians and the ratio. Target >= 1.8x.
#
#   ./scripts/bench-scale.sh                 all three (about 15-25 min)
#   ONLY=latency ./scripts/bench-scale.sh    figures 1 and 2 only; ONLY=viewers: 3 only
#   ONLY=put ./scripts/bench-scale.sh        only the Garage PUT/GET figure (below); with
#                                            ONLY=latency and an s3 setup it runs first too
#   SECS=60 ROUNDS=2 NODE_CPU=0.2 VIEW_SECS=15 COUNTS="50 100 150 ..." (the defaults)
#   HLSMARK_BIN=... LOADGEN_BIN=...          use these binaries (default: release builds)
#
# Where the store and the media are (figures 1 and 2; figure 3 runs on the first of CONFIGS):
#   BENCH_STORE=redis (default) | cluster    one redis-server, or a 3+3 Redis Cluster of real
#                                            redis-servers (appendonly, fsync always, as testkit)
#   BENCH_MEDIA=local (default) | s3         the shared media directory, or a real single-node
#                                            Garage (S3) started here: the ingest PUTs, the API
#                                            nodes (each with an empty data directory) GET
#   CONFIGS="redis:local cluster:s3"         several STORE:MEDIA setups in one run: every round
#                                            runs each (fresh servers each time), alternating,
#                                            so they share the machine's moments; then the
#                                            median over rounds per setup (COMPARE=1: this list)
#   SEGMENTS="1s 2s 4s"                      segment durations to measure (default 1s); parts
#                                            stay 200 ms
#   LAT_ROUNDS=3                             rounds of figures 1-2 (default 3)
#   BENCH_SOURCE=generator (default) | camera  the ingest's source: the generator at 640x360
#                                            (encoded; ~15 KB segments of a checkerboard), or
#                                            a camera-like file made here by ffmpeg (720p30 noisy
#                                            picture, 4 Mbit/s, a keyframe a second) copied
#                                            (`--video copy`, no encode): ~500 KB a second of
#                                            segment, the sizes a user's camera gives
#   GARAGE_PROFILE=bench (default) | test    which Garage build scripts/ensure-garage.sh gives:
#                                            the optimised one, or the debug one the tests use
#   GARAGE_BIN=...                           this garage binary instead
# The PUT figure: one Garage as above, sequential PUTs (SigV4 with the payload's SHA-256, as
# object_store sends them) of 1 MB random bytes (video does not compress), 1 MB of one repeated
# byte (what `cargo bench -p hlsmark-mediastore --bench s3_latency` writes: Garage compresses it
# away), 100 KB random (an LL part of a 4 Mbit/s camera), each then read back: p50/p99/max.
# (STORE=cluster, the old name, still works.) With S3 a segment counts as written when Garage
# logs the start of its PUT (RUST_LOG garage_api_common=info, wall clock, converted to the
# script's clock), so figure 1 then includes the PUT; with a directory it starts when the file
# is complete (inotify), after the write. Each figure 1 line also splits the time into
# write -> listed by both nodes' blocking reloads (PUT + index write + feed + render) and
# listed -> bytes (the node's read of the object: disk, or a GET from S3 into its memory).
#
# Root is needed for figure 3's cgroup quotas (cgroup v1 `cpu` or v2 `cpu.max`); without it the
# nodes run unbounded and the script says so (the figure then measures the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECS:-60}
ROUNDS=${ROUNDS:-2}
NODE_CPU=${NODE_CPU:-0.2}
COUNTS=${COUNTS:-"50 100 150 200 250 300 350 400 500 600 700 800 1000"}
ONLY=${ONLY:-all}
VIEW_SECS=${VIEW_SECS:-15}
if [[ -n ${COMPARE:-} ]]; then
  CONFIGS=${CONFIGS:-"redis:local cluster:s3"}
fi
CONFIGS=${CONFIGS:-"${BENCH_STORE:-${STORE:-redis}}:${BENCH_MEDIA:-local}"}
SEGMENTS=${SEGMENTS:-1s}
BENCH_SOURCE=${BENCH_SOURCE:-generator}
LAT_ROUNDS=${LAT_ROUNDS:-3}
for c in $CONFIGS; do
  case $c in
    redis:local | redis:s3 | cluster:local | cluster:s3) ;;
    *) echo "CONFIGS: $c is not STORE:MEDIA with STORE redis|cluster and MEDIA local|s3" >&2; exit 1 ;;
  esac
done
if [[ ( $CONFIGS == *:s3* || $ONLY == put ) && -z ${GARAGE_BIN:-} ]]; then
  GARAGE_BIN=$(GARAGE_PROFILE=${GARAGE_PROFILE:-bench} ./scripts/ensure-garage.sh)
fi
if [[ -z ${HLSMARK_BIN:-} && $ONLY != put ]]; then
  cargo build --release --quiet -p hlsmark
  HLSMARK_BIN=$ROOT/${CARGO_TARGET_DIR:-target}/release/hlsmark
fi
if [[ -z ${LOADGEN_BIN:-} && $ONLY != latency ]]; then
  cargo build --release --quiet -p hlsmark-loadgen
  LOADGEN_BIN=$ROOT/${CARGO_TARGET_DIR:-target}/release/hlsmark-loadgen
fi
TMP=$(mktemp -d /tmp/hlsmark-scale.XXXXXX)
chmod 755 "$TMP"
PIDS=()
CGROUPS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for g in "${CGROUPS[@]}"; do rmdir "$g" 2>/dev/null || true; done
  [[ -n ${KEEP_TMP:-} ]] || rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The server side (ingest, API nodes, nginx) on core 1, the clients on core 0; as root at nice
# -20 and in an autogroup at -20 (with autogroups, nice alone ranks nothing against other
# sessions), so other work on a shared machine waits (see bench-viewers.sh).
NICE=()
if [[ $(id -u) == 0 ]]; then
  NICE=(nice -n -20)
  { echo -20 >/proc/self/autogroup; } 2>/dev/null || true
fi
SERVER_CPU=(taskset -c 1 "${NICE[@]}")
CLIENT_CPU=(taskset -c 0 "${NICE[@]}")
[[ $(nproc) -lt 2 ]] && { SERVER_CPU=("${NICE[@]}"); CLIENT_CPU=("${NICE[@]}"); }
echo "== bench-scale: $(date -u +%FT%TZ), $(git rev-parse --short HEAD), autogroup $(cat /proc/self/autogroup 2>/dev/null), CPU pressure: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)" >&2

TOKEN=bench-scale-token
# Servers of the current setup (stopped by teardown); PIDS holds every process for the trap.
SETUP_PIDS=()
spawn_bg() { # spawn_bg LOG CMD...: CMD in the background, its pid in APID
  "${@:2}" >"$1" 2>&1 &
  APID=$!
  PIDS+=("$APID"); SETUP_PIDS+=("$APID")
}
teardown() {
  for p in "${SETUP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${SETUP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SETUP_PIDS=()
}

# start_store KIND DIR: one redis-server, or a 3+3 Redis Cluster; sets SPEC.
start_store() {
  local kind=$1 dir=$2
  mkdir -p "$dir"
  if [[ $kind == cluster ]]; then
    SPEC="redis+cluster://"
    local nodes=() i p b d
    for i in 1 2 3 4 5 6; do
      p=$(free_port); b=$(free_port); d=$dir/redis-$i; mkdir -p "$d"
      spawn_bg "$d/log" redis-server --port "$p" --cluster-port "$b" --bind 127.0.0.1 --dir "$d" --save '' \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --appendonly yes --appendfsync always
      nodes+=("127.0.0.1:$p")
    done
    for n in "${nodes[@]}"; do
      for _ in $(seq 50); do redis-cli -p "${n#*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/cluster-create.log"
    SPEC+=$(IFS=,; echo "${nodes[*]:0:3}")
    for _ in $(seq 100); do
      redis-cli -p "${nodes[0]#*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    # Every master's replica in sync before the ingest starts: the store waits for one replica
    # to confirm each write (WAIT 1), and a fresh cluster's first sync can outlast its bound.
    local synced
    for _ in $(seq 200); do
      synced=0
      for n in "${nodes[@]}"; do
        redis-cli -p "${n#*:}" info replication 2>/dev/null | grep -q '^slave0:.*state=online' && synced=$((synced + 1))
      done
      [[ $synced -ge 3 ]] && break
      sleep 0.1
    done
    [[ $synced -ge 3 ]] || { echo "the cluster's replicas did not sync" >&2; exit 1; }
  else
    local port; port=$(free_port)
    spawn_bg "$dir/redis.log" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir"
    SPEC="redis://127.0.0.1:$port/"
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

# start_garage DIR: a single-node Garage (replication 1) as crates/testkit/src/s3.rs sets it up
# (same config, key and steps through the garage CLI), logging the start of every S3 request;
# sets MEDIA_ARGS, MEDIA_ENV and GARAGE_LOG. Not pinned to a core: like Redis it stands for an
# engine on machines of its own.
GARAGE_KEY=GK0123456789abcdef01234567
GARAGE_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
start_garage() {
  local dir=$1 rpc s3 admin id
  rpc=$(free_port); s3=$(free_port); admin=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "7d0b5f1c2e3a4b6c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
  GARAGE_LOG=$dir/garage.log
  spawn_bg "$GARAGE_LOG" env RUST_LOG=garage=warn,garage_api_common=info NO_COLOR=1 "${NICE[@]}" \
    "$GARAGE_BIN" -c "$dir/garage.toml" server
  g() { "$GARAGE_BIN" -c "$dir/garage.toml" "$@"; }
  retry() { for _ in $(seq 150); do "$@" >"$dir/cli.out" 2>&1 && return 0; sleep 0.2; done; cat "$dir/cli.out" "$GARAGE_LOG" >&2; exit 1; }
  retry g node id -q
  id=$(cut -d@ -f1 "$dir/cli.out")
  retry g layout assign -z dc1 -c 1G "$id"
  retry g layout apply --version 1
  retry g key import --yes -n bench "$GARAGE_KEY" "$GARAGE_SECRET"
  retry g bucket create media
  retry g bucket allow --read --write --owner media --key "$GARAGE_KEY"
  MEDIA_ARGS=(--media s3://media/bench)
  MEDIA_ENV=(env AWS_ACCESS_KEY_ID="$GARAGE_KEY" AWS_SECRET_ACCESS_KEY="$GARAGE_SECRET"
    AWS_REGION=garage AWS_ENDPOINT_URL="http://127.0.0.1:$s3" AWS_ALLOW_HTTP=true)
}

# start_api NAME PORT DATA_DIR: `hlsmark serve`; sets APID.
start_api() {
  spawn_bg "$RUN/$1.log" "${MEDIA_ENV[@]}" "${SERVER_CPU[@]}" "$HLSMARK_BIN" serve --store "$SPEC" \
    --data-dir "$3" "${MEDIA_ARGS[@]}" --listen "127.0.0.1:$2" --token "$TOKEN" --live-window 30
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$1 did not start:" >&2; tail -20 "$RUN/$1.log" >&2; exit 1
}

# setup STORE MEDIA SEGMENT: the store, the media, the ingest (the generator at 640x360, an
# encode the shared machine keeps up with; 200 ms parts) and API nodes A and B, in $RUN.
# Sets SPEC, PA, PB, A_PID, B_PID, DATA, GARAGE_LOG.
setup() {
  local store=$1 media=$2 seg=$3
  RUN=$TMP/$store-$media-$seg-$((++SETUPS))
  mkdir -p "$RUN"
  start_store "$store" "$RUN/store"
  MEDIA_ARGS=(); MEDIA_ENV=(); GARAGE_LOG=""
  [[ $media == s3 ]] && start_garage "$RUN/garage"
  DATA=$RUN/data
  mkdir -p "$DATA"
  local source=(--width 640 --height 360 --fps 30 --event-mean 1h)
  if [[ $BENCH_SOURCE == camera ]]; then
    source=(--source "$CAMERA" --video copy --audio off)
  fi
  spawn_bg "$RUN/generate.log" "${MEDIA_ENV[@]}" "${SERVER_CPU[@]}" "$HLSMARK_BIN" generate \
    --store "$SPEC" --data-dir "$DATA" "${MEDIA_ARGS[@]}" --stream live \
    "${source[@]}" --segment-duration "$seg" --part-duration 200ms
  PA=$(free_port); PB=$(free_port)
  # With S3 the nodes share nothing but the store and the bucket: empty data directories.
  local da=$DATA db=$DATA
  if [[ $media == s3 ]]; then da=$RUN/data-a; db=$RUN/data-b; mkdir -p "$da" "$db"; fi
  start_api a "$PA" "$da"; A_PID=$APID
  start_api b "$PB" "$db"; B_PID=$APID
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$PA/hls/live/index.m3u8" 2>/dev/null | grep -q 'EXT-X-PART:' && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$PA/hls/live/index.m3u8" 2>/dev/null | grep -q 'EXT-X-PART:' || {
    echo "no live playlist on A:" >&2; tail -n 20 "$RUN/generate.log" "$RUN/a.log" >&2; exit 1; }
  sleep 3
}
SETUPS=0
case $BENCH_SOURCE in
  generator) ;;
  camera)
    # 20 s looped: 720p30, temporal noise over testsrc2 (so every frame costs bits, as a
    # camera's do), 4 Mbit/s CBR-ish, a keyframe every 30 frames.
    CAMERA=$TMP/camera.mp4
    ffmpeg -v error -nostdin -y -f lavfi -i "testsrc2=size=1280x720:rate=30,noise=alls=24:allf=t" \
      -t 20 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 30 -keyint_min 30 -sc_threshold 0 \
      -b:v 4M -maxrate 4M -bufsize 4M "$CAMERA"
    ;;
  *) echo "BENCH_SOURCE=$BENCH_SOURCE: expected generator or camera" >&2; exit 1 ;;
esac
# start_nginx PORT API_PORT...: scale/nginx.conf with its upstream replaced; sets NPID.
start_nginx() {
  local port=$1; shift
  local dir=$TMP/nginx-$port servers=""
  mkdir -p "$dir"
  for p in "$@"; do servers+="        server 127.0.0.1:$p max_fails=1 fail_timeout=10s;\n"; done
  python3 - "$ROOT/scale/nginx.conf" "$dir" "$port" "$servers" >"$dir/nginx.conf" <<'EOF'
import re, sys
conf, d, port, servers = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4].replace("\\n", "\n")
conf = re.sub(r"(?m)^        server api-1:5000.*\n        server api-2:5000.*\n", servers, conf)
conf = conf.replace("listen 5000;", f"listen 127.0.0.1:{port};").replace("/var/cache/nginx", d)
conf = conf.replace("worker_processes auto;", "worker_processes 1;")
print(conf)
EOF
  "${SERVER_CPU[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g "daemon off; pid $dir/nginx.pid;" 2>"$dir/stderr" &
  NPID=$!
  PIDS+=("$NPID")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "nginx did not start:" >&2; cat "$dir/stderr" "$dir/error.log" >&2; exit 1
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The latency harness (figures 1 and 2): one process, one clock (time.monotonic): the writes
# (inotify on the media dir, or Garage's log of PUT starts), one blocking-reload loop per node,
# one SSE reader per node, one POST loop. Prints JSON lines tagged with LABEL (a JSON object).
cat >"$TMP/latency.py" <<'EOF'
import ctypes, ctypes.util, datetime, http.client, json, os, re, socket, struct, sys, threading, time, uuid

mode, where, pa, pb, token, secs, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]), json.loads(sys.argv[7])
now = time.monotonic
end = now() + secs
written = {}          # file name -> first time it was complete in the media dir / its PUT began
listed = {}           # (node, file) -> time the node's blocking reload listed it
readable = {}         # (node, file) -> time the node had answered a listing and the bytes
size = {}             # file -> bytes
lock = threading.Lock()
SEG = re.compile(r"^e\d+-\d{8,}\.m4s$")
PART = re.compile(r"^e\d+-\d{8,}\.p\d+\.m4s$")

def watch_dir():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
    fd = libc.inotify_init1(0)
    if libc.inotify_add_watch(fd, where.encode(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
        sys.exit(f"inotify on {where} failed")
    while now() < end + 3:
        buf = os.read(fd, 65536)
        t = now()
        i = 0
        while i < len(buf):
            _, mask, _, n = struct.unpack_from("iIII", buf, i)
            name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
            i += 16 + n
            if SEG.match(name) or PART.match(name):
                with lock:
                    written.setdefault(name, t)

# Garage logs `<RFC 3339 time>  INFO garage_api_common::generic_server: <addr> (key ..) PUT /media/bench/live/<file>`
# when a request's headers arrive; wall clock, mapped onto ours.
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PUT = re.compile(r"^(\S+)\s+INFO\s.*\sPUT /\S*/live/(e\d+-\d+(?:\.p\d+)?\.m4s)")
def watch_garage():
    f = open(where, errors="replace")
    f.seek(0, 2)
    part = ""
    while now() < end + 3:
        line = f.readline()
        if not line:
            time.sleep(0.005); continue
        part += line
        if not part.endswith("\n"):
            continue
        line, part = ANSI.sub("", part), ""
        m = PUT.match(line)
        if not m:
            continue
        wall = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        t = now() - (time.time() - wall)
        with lock:
            written.setdefault(m.group(2), t)

def uris(text):
    out = []
    for l in text.splitlines():
        if l.startswith("#EXT-X-PART:"):
            out.append(l.split('URI="')[1].split('"')[0])
        elif l and not l.startswith("#"):
            out.append(l)
    return out

def edge(text):
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    body = text.split("#EXTINF")
    segs = len(body) - 1
    tail = body[-1].count("#EXT-X-PART:")
    last = seq + segs - 1
    return (last + 1, tail) if tail else (last + 1, 0)

def reader(node, port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    m = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    c.request("GET", "/hls/live/index.m3u8"); text = c.getresponse().read().decode()
    seen = set(uris(text))
    while now() < end + 2:
        msn, part = edge(text)
        c.request("GET", f"/hls/live/index.m3u8?_HLS_msn={msn}&_HLS_part={part}")
        r = c.getresponse(); text = r.read().decode()
        tl = now()
        if r.status != 200:
            continue
        for u in uris(text):
            if u in seen:
                continue
            seen.add(u)
            path = u if u.startswith("/") else "/hls/live/" + u
            name = path.rsplit("/", 1)[1].split("?")[0]
            m.request("GET", path); rr = m.getresponse(); body = rr.read()
            t = now()
            if rr.status == 200:
                with lock:
                    listed[(node, name)] = tl
                    readable[(node, name)] = t
                    size[name] = len(body)

sse_seen = {}
def sse(node, port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /markers/live?stream=live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    s.settimeout(2)
    buf = b""
    while now() < end + 3:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            return
        t = now()
        buf += d
        for mid in re.findall(rb'"id":"([0-9a-f-]{36})"', buf):
            with lock:
                sse_seen.setdefault((node, mid.decode()), t)
        buf = buf[buf.rfind(b"\n") + 1:] if b"\n" in buf else buf

posted = {}
refused = []
def poster():
    c = http.client.HTTPConnection("127.0.0.1", pa, timeout=15)
    time.sleep(1)
    while now() < end:
        mid = str(uuid.uuid4())
        utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3)) + "Z"
        body = json.dumps({"id": mid, "label": "bench", "utc": utc})
        t = now()
        c.request("POST", "/markers?stream=live", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = c.getresponse(); answer = r.read()
        if r.status in (200, 201):
            posted[mid] = (t, now())
        else:
            refused.append(f"{r.status} {answer[:200].decode(errors='replace')}")
        time.sleep(0.1)

threads = [threading.Thread(target=watch_dir if mode == "local" else watch_garage, daemon=True)]
threads += [threading.Thread(target=reader, args=(n, p), daemon=True) for n, p in (("a", pa), ("b", pb))]
threads += [threading.Thread(target=sse, args=(n, p), daemon=True) for n, p in (("a", pa), ("b", pb))]
threads += [threading.Thread(target=poster, daemon=True)]
for t in threads: t.start()
time.sleep(secs + 4)

def ms(xs):
    return [round(x * 1000, 1) for x in xs]

def q(xs):
    xs = sorted(xs)
    if not xs: return {"n": 0}
    pick = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return {"n": len(xs), "p50": round(pick(0.5) * 1000, 1), "p99": round(pick(0.99) * 1000, 1), "max": round(xs[-1] * 1000, 1)}

def out(d):
    print(json.dumps({**label, **d}))

with lock:
    for kind, rx in (("segment", SEG), ("part", PART)):
        lat, w2l, l2b, sizes, missing = [], [], [], [], 0
        for name, t in written.items():
            if not rx.match(name) or t > end - 3: continue
            ta, tb = readable.get(("a", name)), readable.get(("b", name))
            if ta is None or tb is None:
                missing += 1; continue
            lat.append(max(ta, tb) - t)
            w2l.append(max(listed[("a", name)], listed[("b", name)]) - t)
            l2b.append(max(ta - listed[("a", name)], tb - listed[("b", name)]))
            sizes.append(size[name])
        mean_kb = round(sum(sizes) / len(sizes) / 1024, 1) if sizes else None
        out({"figure": f"{kind}_write_to_readable_both_nodes_ms", **q(lat), "not_seen": missing,
             "write_to_listed": q(w2l), "listed_to_bytes": q(l2b), "mean_kb": mean_kb, "samples_ms": ms(lat)})
    for node in ("b", "a"):
        lat = [sse_seen[(node, m)] - t0 for m, (t0, _) in posted.items() if (node, m) in sse_seen]
        lost = sum(1 for m in posted if (node, m) not in sse_seen)
        out({"figure": f"marker_post_a_to_sse_{node}_ms", **q(lat), "lost": lost, "samples_ms": ms(lat)})
    out({"figure": "marker_post_answer_ms", **q([t1 - t0 for t0, t1 in posted.values()]), "refused": len(refused), "first_refusal": refused[:1]})
EOF

put_figure() {
  RUN=$TMP/put; mkdir -p "$RUN"
  start_garage "$RUN/garage"
  echo "== Garage ($GARAGE_BIN) PUT and GET, sequential; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "${CLIENT_CPU[@]}" python3 - "${MEDIA_ENV[4]#AWS_ENDPOINT_URL=}" "$GARAGE_KEY" "$GARAGE_SECRET" "$(cut -d' ' -f1-3 /proc/loadavg)" "$GARAGE_BIN" <<'EOF' | tee -a "$TMP/results" >&2
import datetime, hashlib, hmac, http.client, json, os, sys, time, urllib.parse
endpoint, key, secret, load, binary = sys.argv[1:6]
host = urllib.parse.urlparse(endpoint).netloc
h = lambda k, m: hmac.new(k, m.encode(), hashlib.sha256).digest()
def signed(method, path, payload_hash):
    t = datetime.datetime.now(datetime.timezone.utc)
    amz, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
    canon = f"{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_hash}"
    scope = f"{day}/garage/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canon.encode()).hexdigest()}"
    k = h(h(h(h(("AWS4" + secret).encode(), day), "garage"), "s3"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return {"x-amz-date": amz, "x-amz-content-sha256": payload_hash,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"}
c = http.client.HTTPConnection(host, timeout=60)
EMPTY = hashlib.sha256(b"").hexdigest()
def q(xs):
    xs = sorted(xs); pick = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return {"n": len(xs), "p50": round(pick(0.5) * 1000, 1), "p99": round(pick(0.99) * 1000, 1), "max": round(xs[-1] * 1000, 1)}
for what, size, n, rnd in (("1 MB random", 1 << 20, 100, True), ("1 MB repeated byte", 1 << 20, 100, False), ("100 KB random", 100 << 10, 200, True)):
    puts, gets = [], []
    for i in range(n):
        body = os.urandom(size) if rnd else b"\x5a" * size
        path = f"/media/putbench/{what.replace(' ', '-')}/{i:06}"
        hdr = signed("PUT", path, hashlib.sha256(body).hexdigest())
        hdr["Content-Length"] = str(size)
        t0 = time.monotonic()
        c.request("PUT", path, body, hdr); r = c.getresponse(); r.read()
        t1 = time.monotonic()
        assert r.status == 200, (r.status, r.reason)
        c.request("GET", path, headers=signed("GET", path, EMPTY)); r = c.getresponse(); got = r.read()
        t2 = time.monotonic()
        assert r.status == 200 and len(got) == size, r.status
        puts.append(t1 - t0); gets.append(t2 - t1)
    print(json.dumps({"figure": "garage_put_get_ms", "object": what, "garage": binary, "loadavg": load, "put": q(puts), "get": q(gets)}))
EOF
  teardown
}
if [[ $ONLY == put || ( $ONLY == latency && $CONFIGS == *:s3* ) ]]; then
  put_figure
fi

if [[ $ONLY == all || $ONLY == latency ]]; then
  for round in $(seq "$LAT_ROUNDS"); do
    for seg in $SEGMENTS; do
      for cfg in $CONFIGS; do
        store=${cfg%%:*} media=${cfg##*:}
        setup "$store" "$media" "$seg"
        echo "== round $round, $store + $media, ${seg} segments: write -> readable on A and B, marker POST on A -> SSE on B, ${SECS} s; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        where=$DATA/hls/live
        [[ $media == s3 ]] && where=$GARAGE_LOG
        label="{\"round\":$round,\"store\":\"$store\",\"media\":\"$media\",\"segment\":\"$seg\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
        "${CLIENT_CPU[@]}" python3 "$TMP/latency.py" "$media" "$where" "$PA" "$PB" "$TOKEN" "$SECS" "$label" >"$TMP/lat.out"
        cat "$TMP/lat.out" >>"$TMP/latency-rounds"
        python3 - "$TMP/lat.out" >&2 <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    f = r["figure"].replace("_ms", "")
    if r.get("n"):
        extra = ""
        if "write_to_listed" in r:
            extra = f"; write->listed p50/p99 {r['write_to_listed']['p50']}/{r['write_to_listed']['p99']}, listed->bytes {r['listed_to_bytes']['p50']}/{r['listed_to_bytes']['p99']}, {r['mean_kb']} KB, not seen {r['not_seen']}"
        print(f"   {f}: n {r['n']}, p50 {r['p50']} ms, p99 {r['p99']} ms, max {r['max']} ms{extra}")
    else:
        print(f"   {f}: no samples {r}")
EOF
        teardown
      done
    done
  done
  # Per setup and figure: the median over rounds of each round's p50 and p99, and the p99 of
  # every sample of every round pooled.
  python3 - "$TMP/latency-rounds" >>"$TMP/results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = []
for r in rows:
    k = (r["store"], r["media"], r["segment"], r["figure"])
    if k not in keys: keys.append(k)
for k in keys:
    rs = [r for r in rows if (r["store"], r["media"], r["segment"], r["figure"]) == k and r.get("n")]
    if not rs:
        print(json.dumps({"store": k[0], "media": k[1], "segment": k[2], "figure": k[3], "rounds": 0})); continue
    med = lambda f: round(statistics.median(f(r) for r in rs), 1)
    pooled = sorted(x for r in rs for x in r.get("samples_ms", []))
    d = {"store": k[0], "media": k[1], "segment": k[2], "figure": k[3], "rounds": len(rs),
         "loadavg": [r["loadavg"] for r in rs], "median_p50": med(lambda r: r["p50"]), "median_p99": med(lambda r: r["p99"]),
         "per_round_p99": [r["p99"] for r in rs], "max": max(r["max"] for r in rs)}
    if pooled:
        d["pooled"] = {"n": len(pooled), "p99": pooled[min(len(pooled) - 1, int(0.99 * len(pooled)))]}
    if "write_to_listed" in rs[0]:
        d["median_write_to_listed_p50_p99"] = [med(lambda r: r["write_to_listed"]["p50"]), med(lambda r: r["write_to_listed"]["p99"])]
        d["median_listed_to_bytes_p50_p99"] = [med(lambda r: r["listed_to_bytes"]["p50"]), med(lambda r: r["listed_to_bytes"]["p99"])]
        d["mean_kb"] = med(lambda r: r["mean_kb"])
        d["not_seen"] = sum(r["not_seen"] for r in rs)
    if "lost" in rs[0]:
        d["lost"] = sum(r["lost"] for r in rs)
    print(json.dumps(d))
EOF
fi

if [[ $ONLY == all || $ONLY == viewers ]]; then
  # Fresh servers (no markers of figure 2 in the playlists) on the first setup of CONFIGS.
  cfg=${CONFIGS%% *}
  setup "${cfg%%:*}" "${cfg##*:}" "${SEGMENTS%% *}"
  # A cgroup per API node with a CPU quota (cgroup v1 `cpu` controller, or v2).
  CG=""
  if [[ $(id -u) == 0 && -w /sys/fs/cgroup/cpu ]]; then CG=v1; elif [[ $(id -u) == 0 && -f /sys/fs/cgroup/cgroup.controllers ]]; then CG=v2; fi
  QUOTA_US=$(awk -v c="$NODE_CPU" 'BEGIN { printf "%d", c * 100000 }')
  quota() { # PID NAME
    local g
    case $CG in
      v1) g=/sys/fs/cgroup/cpu/hlsmark-scale-$$-$2; mkdir -p "$g"; CGROUPS+=("$g")
          echo 100000 >"$g/cpu.cfs_period_us"
          echo "$QUOTA_US" >"$g/cpu.cfs_quota_us"
          echo "$1" >"$g/cgroup.procs" ;;
      v2) g=/sys/fs/cgroup/hlsmark-scale-$$-$2; mkdir -p "$g"; CGROUPS+=("$g")
          echo "$QUOTA_US 100000" >"$g/cpu.max"
          echo "$1" >"$g/cgroup.procs" ;;
      *) echo "no cgroup quota (not root or no cpu controller): the nodes run unbounded" >&2 ;;
    esac
  }
  quota "$A_PID" a
  quota "$B_PID" b
  # held LABEL NGINX_PORT PIDS: the largest count of COUNTS with <= 1 % of the viewers behind.
  held() {
    local label=$1 port=$2 pids=$3 best=0 n line behind
    for n in $COUNTS; do
      line=$(timeout $((VIEW_SECS + 60)) "${CLIENT_CPU[@]}" "$LOADGEN_BIN" \
        --url "http://127.0.0.1:$port/hls/live/index.m3u8" --viewers "$n" --mode ll \
        --seconds "${VIEW_SECS}s" --pid "$pids" --label "$label" 2>>"$TMP/loadgen.err" || true)
      [[ -n $line ]] || break
      echo "$line" >>"$TMP/viewer-runs"
      read -r behind summary < <(python3 - "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
d = r["delay_ms"]
ok = r["viewers_behind"] <= 0.01 * r["viewers"] and r["delivered"] > 0
print(1 if ok else 0, f"behind {r['viewers_behind']}, missed {r['missed']}, errors {r['errors']}, "
      f"p99 {d['p99']:.0f} ms, node CPU {r['server_cpu'] or 0:.2f}, {r['media_mbit_s']:.0f} Mbit/s")
PY
)
      echo "   $label $n viewers: $summary" >&2
      [[ $behind == 1 ]] || break
      best=$n
    done
    HELD=$best
  }
  for round in $(seq "$ROUNDS"); do
    for nodes in 1 2; do
      np=$(free_port)
      if [[ $nodes == 1 ]]; then start_nginx "$np" "$PA"; pids=$A_PID; else start_nginx "$np" "$PA" "$PB"; pids=$A_PID,$B_PID; fi
      sleep 1
      echo "== round $round, $nodes API node(s) at $NODE_CPU core each behind nginx; pressure $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)" >&2
      held "nodes$nodes" "$np" "$pids"
      echo "{\"figure\":\"viewers_held\",\"round\":$round,\"nodes\":$nodes,\"node_cpu\":$NODE_CPU,\"held\":$HELD}" >>"$TMP/results"
      echo "   held: $HELD" >&2
      stop "$NPID"
    done
  done
  python3 - "$TMP/results" >>"$TMP/results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"viewers_held"' in l]
by = {n: [r["held"] for r in rows if r["nodes"] == n] for n in (1, 2)}
ratios = [b / a for a, b in zip(by[1], by[2]) if a]
print(json.dumps({"figure": "viewers_held_summary", "one_node": by[1], "two_nodes": by[2],
    "median_one": statistics.median(by[1]) if by[1] else None, "median_two": statistics.median(by[2]) if by[2] else None,
    "ratio_per_round": [round(r, 2) for r in ratios], "ratio_median": round(statistics.median(ratios), 2) if ratios else None}))
EOF
fi

echo "== results (JSON lines)" >&2
cat "$TMP/results"
[[ -f $TMP/viewer-runs ]] && cp "$TMP/viewer-runs" "${RUNS_OUT:-/tmp/bench-scale-viewer-runs.jsonl}"
echo "== CPU pressure at the end: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)" >&2
