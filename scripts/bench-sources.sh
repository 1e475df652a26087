#!/usr/bin/env bash
# Real-source benchmark (issue 12): CPU of hlsmark itself and of its ffmpeg children in copy mode
# for a 1080p30 H.264 file source, 8 copy-mode streams in one process, launch -> first playable
# playlist (file, 8 files, generator, RTSP camera), and the generator path against its earlier
# figure (2.0-2.5 % of a core).
#
#   ./scripts/bench-sources.sh [rounds] [seconds]     default 3 rounds, 15 s measured per case
#   HLSMARK_BIN=path ./scripts/bench-sources.sh        a binary to use instead of building
#
# CPU is utime+stime from /proc/<pid>/stat (fields 14+15: the process's own threads, children
# excluded) over the measuring window, after 5 s of warm-up; ffmpeg's is the sum over hlsmark's
# ffmpeg children. "Playable" is the first index.m3u8 with at least one segment that ffprobe opens
# (measured from just before the process is started; see first_playable). Medians over the rounds.
# Targets: hlsmark <= 1 % of a core per copy-mode stream; first playable playlist <= one segment
# duration + 0.5 s; generator path not slower than 2.0-2.5 %.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-15}
WARMUP=5
for p in ffmpeg ffprobe curl; do
  command -v "$p" >/dev/null || { echo "bench-sources needs $p (./scripts/test.sh installs it)" >&2; exit 1; }
done
if [[ -n ${HLSMARK_BIN:-} ]]; then
  BIN=$(realpath "$HLSMARK_BIN")   # a given binary (e.g. an earlier version to compare)
else
  cargo build --release --locked -p hlsmark --bin hlsmark >&2
  BIN=$PWD/${CARGO_TARGET_DIR:-target}/release/hlsmark
fi
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# The source: 1080p30 H.264 at ~4 Mbit/s, a keyframe every second, 30 s (kept between runs).
CACHE=${CARGO_TARGET_DIR:-target}/bench-sources
mkdir -p "$CACHE"
SRC=$PWD/$CACHE/testsrc2-1080p30-4M.mp4
if [[ ! -s "$SRC" ]]; then
  echo "making $SRC (once)" >&2
  ffmpeg -v error -nostdin -y -f lavfi -i "testsrc2=size=1920x1080:rate=30" -t 30 \
    -c:v libx264 -preset veryfast -b:v 4M -maxrate 4M -bufsize 8M -g 30 -keyint_min 30 \
    -sc_threshold 0 -pix_fmt yuv420p "$SRC.tmp.mp4"
  mv "$SRC.tmp.mp4" "$SRC"
fi

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
children_cpu() { # sum over hlsmark's ffmpeg children
  local t=0 c
  for c in $(pgrep -P "$PID" ffmpeg || true); do t=$((t + $(cpu_of "$c"))); done
  echo "$t"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# start CASE ARGS...: starts hlsmark, sets PID, PORT, T_START, DIR.
start() {
  local case=$1; shift
  PORT=$(free_port)
  DIR=$TMP/$case
  rm -rf "$DIR"; mkdir -p "$DIR"
  T_START=$(now)
  RUST_LOG=warn NO_COLOR=1 "$BIN" run --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" "$@" \
    >"$DIR/log" 2>&1 &
  PID=$!
}

stop() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

# "listed fetched probed": seconds from T_START to the first playlist of STREAM that lists a
# segment; to the fetch of the first playlist proved playable (that very playlist, saved with its
# URIs made absolute, opened by ffprobe: playlist, init section and segment read); and to the end of
# that ffprobe run. "fetched" is when a player could have had a playable playlist; "probed" adds
# ffprobe's own start-up (~0.1-0.3 s, the measuring client's time; the figure before 2026-12-02).
first_playable() {
  local stream=$1 deadline url base listed="" t pl
  url="http://127.0.0.1:$PORT/hls/$stream/index.m3u8"
  base="http://127.0.0.1:$PORT/hls/$stream/"
  pl=$DIR/probe.m3u8
  deadline=$(( $(date +%s) + 30 ))
  while (( $(date +%s) < deadline )); do
    t=$(now)
    if curl -sf "$url" -o "$pl.raw" 2>/dev/null && grep -q '^#EXTINF' "$pl.raw"; then
      [[ -n "$listed" ]] || listed=$t
      sed -e "/^[^#]/s|^|$base|" -e "s|URI=\"|URI=\"$base|g" "$pl.raw" >"$pl"
      if ffprobe -v error -protocol_whitelist file,http,tcp "$pl" >/dev/null 2>&1; then
        awk -v a="$T_START" -v l="$listed" -v f="$t" -v b="$(now)" \
          'BEGIN { printf "%.3f %.3f %.3f\n", l - a, f - a, b - a }'
        return
      fi
    fi
    kill -0 "$PID" 2>/dev/null || { echo "hlsmark died:" >&2; tail -5 "$DIR/log" >&2; exit 1; }
    sleep 0.02
  done
  echo "no playable playlist in 30 s:" >&2; tail -5 "$DIR/log" >&2; exit 1
}

# measure: "own% ffmpeg%" of one core over SECS after WARMUP (from now).
measure() {
  sleep "$WARMUP"
  local c0 f0 t0 c1 f1 t1
  c0=$(cpu_of "$PID"); f0=$(children_cpu); t0=$(now)
  sleep "$SECS"
  c1=$(cpu_of "$PID"); f1=$(children_cpu); t1=$(now)
  awk -v c0="$c0" -v c1="$c1" -v f0="$f0" -v f1="$f1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" \
    'BEGIN { w = t1 - t0; printf "%.3f %.3f\n", (c1 - c0) / hz / w * 100, (f1 - f0) / hz / w * 100 }'
}

declare -a ONE_OWN ONE_FF ONE_LIST ONE_FETCH ONE_PLAY EIGHT_OWN EIGHT_FF EIGHT_LIST EIGHT_FETCH EIGHT_PLAY GEN_OWN
declare -a GENL_LIST GENL_FETCH GENL_PLAY RTSP_LIST RTSP_FETCH RTSP_PLAY
CONFIG=$TMP/eight.toml
: >"$CONFIG"
for i in 1 2 3 4 5 6 7 8; do
  printf '[[stream]]\nname = "cam%d"\nsource = "%s"\nvideo = "copy"\nsegment_duration = "1s"\n\n' "$i" "$SRC" >>"$CONFIG"
done

# The RTSP camera: GStreamer's RTSP server (scripts/rtsp-server.py) serving the same clip in real
# time; each client gets the clip from its start (a keyframe). Skipped if GStreamer is missing.
RTSP_URL=""
RTSP_PID=""
RTSP_PORT=$(free_port)
/usr/bin/python3 scripts/rtsp-server.py "$SRC" --port "$RTSP_PORT" >"$TMP/rtsp.out" 2>"$TMP/rtsp.log" &
RTSP_PID=$!
for _ in $(seq 1 300); do  # GStreamer's start takes seconds on a busy machine
  RTSP_URL=$(awk '/^ready / { print $2; exit }' "$TMP/rtsp.out")
  [[ -n "$RTSP_URL" ]] && break
  kill -0 "$RTSP_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$RTSP_URL" ]] || echo "no RTSP server (scripts/rtsp-server.py): RTSP row skipped" >&2
trap 'cleanup; [[ -n "$RTSP_PID" ]] && kill "$RTSP_PID" 2>/dev/null; true' EXIT

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  # One copy-mode stream.
  start one --source "$SRC" --video copy --segment-duration 1s
  read -r listed fetched playable < <(first_playable live)
  ONE_LIST+=("$listed"); ONE_FETCH+=("$fetched"); ONE_PLAY+=("$playable")
  read -r own ff < <(measure)
  ONE_OWN+=("$own"); ONE_FF+=("$ff")
  stop
  # Eight copy-mode streams in one process.
  start eight --config "$CONFIG"
  read -r listed fetched playable < <(first_playable cam8)
  EIGHT_LIST+=("$listed"); EIGHT_FETCH+=("$fetched"); EIGHT_PLAY+=("$playable")
  read -r own ff < <(measure)
  EIGHT_OWN+=("$own"); EIGHT_FF+=("$ff")
  stop
  # Launch of the generator (hlsmark run's default source, 1 s segments).
  start genl --segment-duration 1s
  read -r listed fetched playable < <(first_playable live)
  GENL_LIST+=("$listed"); GENL_FETCH+=("$fetched"); GENL_PLAY+=("$playable")
  stop
  # Launch of an RTSP camera (copy mode: a camera's H.264 as it is).
  if [[ -n "$RTSP_URL" ]]; then
    start rtsp --source "$RTSP_URL" --video copy --segment-duration 1s
    read -r listed fetched playable < <(first_playable live)
    RTSP_LIST+=("$listed"); RTSP_FETCH+=("$fetched"); RTSP_PLAY+=("$playable")
    stop
  fi
  # The generator path (same flags as scripts/bench-generator.sh, via `generate`).
  PORT=$(free_port); DIR=$TMP/gen; rm -rf "$DIR"; mkdir -p "$DIR"
  RUST_LOG=warn NO_COLOR=1 "$BIN" generate --data-dir "$DIR/data" --width 1280 --height 720 \
    --fps 30 --segment-duration 1s --realtime true >"$DIR/log" 2>&1 &
  PID=$!
  read -r own _ < <(measure)
  GEN_OWN+=("$own")
  stop
done

med() { if (( $# )); then printf '%s\n' "$@" | median; else echo nan; fi; }
all() { printf '%s ' "$@"; }
launch_row() { # NAME LIST FETCH PLAY arrays by name
  local -n l=$2 f=$3 p=$4
  printf '  %-34s listed %.2f s, playable (fetched) %.2f s (rounds: %s), ffprobe done %.2f s\n' \
    "$1" "$(med "${l[@]}")" "$(med "${f[@]}")" "$(all "${f[@]}")" "$(med "${p[@]}")"
}
echo
echo "hlsmark real sources, $ROUNDS rounds of $SECS s (after ${WARMUP} s warm-up), $(nproc) cores, release build"
echo "source: 1920x1080 30 fps H.264 ~4 Mbit/s, 30 s looped and paced, --video copy, 1 s segments"
echo "CPU pressure at the end: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
printf 'one copy-mode stream:   hlsmark %.2f %% of a core (rounds: %s), its ffmpeg %.2f %% (%s)\n' \
  "$(med "${ONE_OWN[@]}")" "$(all "${ONE_OWN[@]}")" "$(med "${ONE_FF[@]}")" "$(all "${ONE_FF[@]}")"
printf '8 copy-mode streams:    hlsmark %.2f %% in all = %.2f %% per stream (rounds: %s), ffmpeg %.2f %% in all = %.2f %% per stream\n' \
  "$(med "${EIGHT_OWN[@]}")" "$(awk -v x="$(med "${EIGHT_OWN[@]}")" 'BEGIN { print x / 8 }')" \
  "$(all "${EIGHT_OWN[@]}")" "$(med "${EIGHT_FF[@]}")" "$(awk -v x="$(med "${EIGHT_FF[@]}")" 'BEGIN { print x / 8 }')"
echo "launch -> first playable playlist (target <= 1.5 s), medians:"
launch_row "file, one stream (copy):" ONE_LIST ONE_FETCH ONE_PLAY
launch_row "file, 8 streams (cam8, copy):" EIGHT_LIST EIGHT_FETCH EIGHT_PLAY
launch_row "generator (run, 1 s segments):" GENL_LIST GENL_FETCH GENL_PLAY
if [[ -n "$RTSP_URL" ]]; then launch_row "RTSP camera (copy, GOP 1 s):" RTSP_LIST RTSP_FETCH RTSP_PLAY; fi
printf 'generator 1280x720@30 (hlsmark generate, ffmpeg excluded): %.2f %% of a core (rounds: %s); before: 2.0-2.5 %%\n' \
  "$(med "${GEN_OWN[@]}")" "$(all "${GEN_OWN[@]}")"
