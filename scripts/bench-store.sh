#!/usr/bin/env bash
# Marker write benchmark (issue 16), bounded (about 1-3 minutes after the release build):
#   1. the embedded store's single inserts from BENCH_WRITERS (32) concurrent writers: as built
#      (group commit made durable by the marker journal), group commit without the journal, and
#      one commit per
#      insert (the old path: `set_max_group(1)`), alternating rounds on fresh files, medians and
#      the ratio; plus one all-or-nothing batch of 1,000 markers (store call)
#      (`target/release/store-insert-bench`, crates/store/src/bin/store-insert-bench.rs)
#   2. POST /markers with an array of 1,000 markers end to end (`hlsmark serve`, embedded store,
#      release build, curl), against the same 1,000 markers as single POSTs over one keep-alive
#      connection (python3 http.client), medians of BENCH_ROUNDS
#
#   scripts/bench-store.sh
#   BENCH_ROUNDS=3 BENCH_WRITERS=32 BENCH_INSERTS=200   rounds, writers, inserts per writer
#   BENCH_DIR=/var/tmp/x      where the store files go (the disk whose fsync is measured)
#   BENCH_REDIS=1             also the Redis backend's single inserts (a redis-server of its own,
#                             appendonly everysec)
#
# Throughput of acknowledged single inserts is bounded by writers / commit latency: each writer
# waits for its fsync before its next insert, so on a disk that takes 10 ms per fsync 32 writers
# make at most ~3,200 inserts/s; the ratio against the old path is what the code changes.
# Everything runs in a temp dir on free ports and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${BENCH_ROUNDS:-3}
WRITERS=${BENCH_WRITERS:-32}
INSERTS=${BENCH_INSERTS:-200}
for p in curl python3; do
  command -v "$p" >/dev/null || { echo "bench-store: $p is required" >&2; exit 1; }
done

echo "== building (release)"
cargo build --release --quiet -p hlsmark-store --bin store-insert-bench -p hlsmark --bin hlsmark \
  -p hlsmark-api --example bench_fixture
BIN=target/release/hlsmark
FIXTURE=target/release/examples/bench_fixture

TMP=$(mktemp -d "${BENCH_DIR:-/tmp}/hlsmark-bench-store.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
REDIS_URL=()
if [[ ${BENCH_REDIS:-0} == 1 ]]; then
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$TMP" >/dev/null &
  PIDS+=($!)
  wait_port "$RPORT"
  REDIS_URL=("redis://127.0.0.1:$RPORT/")
fi

echo "== 1. store: $WRITERS concurrent writers: journal (as built) vs group commit without it vs one commit per insert"
target/release/store-insert-bench "$TMP/store" "$WRITERS" "$INSERTS" "$ROUNDS" "${REDIS_URL[@]}"

echo "== 2. POST /markers: an array of 1,000 vs 1,000 single POSTs (hlsmark serve, embedded store)"
mkdir -p "$TMP/data/hls/live"
STORE="$TMP/data/hlsmark.redb"
# One epoch (30 fps) and no segments: markers snap by the epoch's frame formula.
"$FIXTURE" "$STORE" "$TMP/data" 0 >/dev/null
PORT=$(free_port)
TOKEN=bench-token-0123456789
HLSMARK_STORE_PREFIX=bench RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" \
  --store "$STORE" --token "$TOKEN" --workers 2 >/dev/null &
PIDS+=($!)
wait_port "$PORT"
python3 - "$PORT" "$TOKEN" "$ROUNDS" <<'EOF'
import http.client, json, statistics, sys, time, uuid
port, token, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

def markers(base):
    return [{"id": str(uuid.uuid4()), "label": f"detection {base + i}", "kind": "detector",
             "hls": (base + i) * 0.01, "severity": ["info", "warning", "critical"][i % 3],
             "tags": ["person", f"zone:{i % 4}"], "data": {"score": 0.87}} for i in range(1000)]

def post(conn, body):
    conn.request("POST", "/markers", body=json.dumps(body), headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status not in (200, 201):
        sys.exit(f"POST answered {r.status}: {data[:300]!r}")
    return data

bulk, single = [], []
for rnd in range(rounds):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    ms = markers(rnd * 2000)
    body = json.dumps(ms)
    t = time.perf_counter()
    post(conn, ms)
    bulk.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    for m in markers(rnd * 2000 + 1000):
        post(conn, m)
    single.append((time.perf_counter() - t) * 1000)
    print(f"round {rnd + 1}: array of 1,000 ({len(body) // 1024} KiB) {bulk[-1]:.1f} ms; "
          f"1,000 single POSTs {single[-1]:.0f} ms")
    conn.close()
b, s = statistics.median(bulk), statistics.median(single)
print(f"median: POST of an array of 1,000 markers {b:.1f} ms end to end; 1,000 single POSTs "
      f"{s:.0f} ms; ratio {s / b:.0f}x")
EOF
