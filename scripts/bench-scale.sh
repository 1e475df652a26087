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
#   SECS=60 ROUNDS=2 NODE_CPU=0.2 VIEW_SECS=15 COUNTS="50 100 150 ..." (the defaults)
#   HLSMARK_BIN=... LOADGEN_BIN=...          use these binaries (default: release builds)
#   STORE=redis (default) | cluster          one redis-server, or a 3+3 Redis Cluster when the
#                                            build has the cluster backend
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
STORE=${STORE:-redis}
VIEW_SECS=${VIEW_SECS:-15}
if [[ -z ${HLSMARK_BIN:-} ]]; then
  cargo build --release --quiet -p hlsmark
  HLSMARK_BIN=$ROOT/${CARGO_TARGET_DIR:-target}/release/hlsmark
fi
if [[ -z ${LOADGEN_BIN:-} ]]; then
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
  rm -rf "$TMP"
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

# --- The store.
if [[ $STORE == cluster ]]; then
  SPEC="redis+cluster://"
  NODES=()
  for i in 1 2 3 4 5 6; do
    p=$(free_port); b=$(free_port); d=$TMP/redis-$i; mkdir -p "$d"
    redis-server --port "$p" --cluster-port "$b" --bind 127.0.0.1 --dir "$d" --save '' \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --appendonly yes --appendfsync always >"$d/log" 2>&1 &
    PIDS+=("$!"); NODES+=("127.0.0.1:$p")
  done
  sleep 1
  redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes >"$TMP/cluster-create.log"
  SPEC+=$(IFS=,; echo "${NODES[*]:0:3}")
  sleep 2
else
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
  PIDS+=("$!")
  SPEC="redis://127.0.0.1:$RPORT/"
  for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- The ingest: the generator at 640x360 (an encode the shared machine keeps up with).
DATA=$TMP/data
mkdir -p "$DATA"
"${SERVER_CPU[@]}" "$HLSMARK_BIN" generate --store "$SPEC" --data-dir "$DATA" --stream live \
  --width 640 --height 360 --fps 30 --segment-duration 1s --part-duration 200ms \
  --event-mean 1h >"$TMP/generate.log" 2>&1 &
PIDS+=("$!")

TOKEN=bench-scale-token
# start_api NAME PORT: `hlsmark serve`; sets APID.
start_api() {
  "${SERVER_CPU[@]}" "$HLSMARK_BIN" serve --store "$SPEC" --data-dir "$DATA" --listen "127.0.0.1:$2" \
    --token "$TOKEN" --live-window 30 >"$TMP/$1.log" 2>&1 &
  APID=$!
  PIDS+=("$APID")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$1 did not start:" >&2; tail -20 "$TMP/$1.log" >&2; exit 1
}
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

PA=$(free_port); PB=$(free_port)
start_api a "$PA"; A_PID=$APID
start_api b "$PB"; B_PID=$APID
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$PA/hls/live/index.m3u8" 2>/dev/null | grep -q 'EXT-X-PART:' && break
  sleep 0.1
done
sleep 3

if [[ $ONLY == all || $ONLY == latency ]]; then
  echo "== write -> readable on A and B, and marker POST on A -> SSE on B: ${SECS} s" >&2
  "${CLIENT_CPU[@]}" python3 - "$DATA/hls/live" "$PA" "$PB" "$TOKEN" "$SECS" >>"$TMP/results" <<'EOF'
# One process, one clock (time.monotonic): inotify on the media dir, one blocking-reload loop per
# node, one SSE reader per node, one POST loop.
import ctypes, ctypes.util, http.client, json, os, re, socket, struct, sys, threading, time, uuid

media, pa, pb, token, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
now = time.monotonic
end = now() + secs
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
written = {}          # file name -> first time it was complete in the media dir
readable = {}         # (node, file) -> time the node had answered a listing and the bytes
lock = threading.Lock()
SEG = re.compile(r"^e\d+-\d{8,}\.m4s$")
PART = re.compile(r"^e\d+-\d{8,}\.p\d+\.m4s$")

def watch():
    fd = libc.inotify_init1(0)
    if libc.inotify_add_watch(fd, media.encode(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
        sys.exit(f"inotify on {media} failed")
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
        if r.status != 200:
            continue
        for u in uris(text):
            if u in seen:
                continue
            seen.add(u)
            path = u if u.startswith("/") else "/hls/live/" + u
            m.request("GET", path); rr = m.getresponse(); rr.read()
            t = now()
            if rr.status == 200:
                with lock:
                    readable[(node, path.rsplit("/", 1)[1].split("?")[0])] = t

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

threads = [threading.Thread(target=watch, daemon=True)]
threads += [threading.Thread(target=reader, args=(n, p), daemon=True) for n, p in (("a", pa), ("b", pb))]
threads += [threading.Thread(target=sse, args=(n, p), daemon=True) for n, p in (("a", pa), ("b", pb))]
threads += [threading.Thread(target=poster, daemon=True)]
for t in threads: t.start()
time.sleep(secs + 4)

def q(xs):
    xs = sorted(xs)
    if not xs: return {"n": 0}
    pick = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return {"n": len(xs), "p50": round(pick(0.5) * 1000, 1), "p99": round(pick(0.99) * 1000, 1), "max": round(xs[-1] * 1000, 1)}

with lock:
    for kind, rx in (("segment", SEG), ("part", PART)):
        lat, missing = [], 0
        for name, t in written.items():
            if not rx.match(name) or t > end - 3: continue
            ta, tb = readable.get(("a", name)), readable.get(("b", name))
            if ta is None or tb is None:
                missing += 1; continue
            lat.append(max(ta, tb) - t)
        print(json.dumps({"figure": f"{kind}_write_to_readable_both_nodes_ms", **q(lat), "not_seen": missing}))
    for node in ("b", "a"):
        lat = [sse_seen[(node, m)] - t0 for m, (t0, _) in posted.items() if (node, m) in sse_seen]
        lost = sum(1 for m in posted if (node, m) not in sse_seen)
        print(json.dumps({"figure": f"marker_post_a_to_sse_{node}_ms", **q(lat), "lost": lost}))
    print(json.dumps({"figure": "marker_post_answer_ms", **q([t1 - t0 for t0, t1 in posted.values()]), "refused": len(refused), "first_refusal": refused[:1]}))
EOF
  tail -6 "$TMP/results" >&2
fi

if [[ $ONLY == all || $ONLY == viewers ]]; then
  if [[ $ONLY == all ]]; then
    # The markers of figure 2 are date ranges of every live playlist until they slide out of
    # the 30 s window; the viewers must not pay for them.
    echo "== waiting 35 s for figure 2's markers to leave the live window" >&2
    sleep 35
  fi
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
