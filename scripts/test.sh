#!/usr/bin/env bash
# The one test command: installs what is missing on a fresh Debian/Ubuntu machine that has only
# Rust, then runs every gate and every test. Idempotent; quick when everything is in place.
#
#   ./scripts/test.sh            everything (gates, Rust tests, browser tests)
#   HLSMARK_SKIP_BROWSER=1 ...   skip the browser suite (development only; CI never sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

# --- 1. System packages: ffmpeg, redis-server, chromium, GStreamer's RTSP server, nginx-rtmp -------
# (and node, python3, kill if missing). Each is detected by a command or a file, so a machine that
# has it from elsewhere (nodejs from another repository, say) is left alone.
need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
# Never ask apt for npm when one exists: Debian's npm conflicts with nodejs from other repositories.
command -v npm >/dev/null || need_apt+=(nodejs npm)
[[ -x /usr/bin/python3 ]] || need_apt+=(python3)
# The tests' RTSP camera (scripts/rtsp-server.py) runs on Debian's python3 with GStreamer's RTSP
# server (the gi bindings live in /usr/bin/python3's dist-packages, not in a pyenv/venv python).
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' \
  >/dev/null 2>&1 || need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0)
gst_has() { command -v gst-inspect-1.0 >/dev/null && gst-inspect-1.0 --exists "$1"; }
command -v gst-launch-1.0 >/dev/null || need_apt+=(gstreamer1.0-tools)
gst_has rtph264pay || need_apt+=(gstreamer1.0-plugins-good)
gst_has h264parse || need_apt+=(gstreamer1.0-plugins-bad)
gst_has x264enc || need_apt+=(gstreamer1.0-plugins-ugly)
gst_has avdec_h264 || need_apt+=(gstreamer1.0-libav)
# nginx with the RTMP module: the RTMP ingest the restream tests push to.
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
compgen -G '/usr/lib/nginx/modules/ngx_rtmp_module.so' >/dev/null || need_apt+=(libnginx-mod-rtmp)
# Tests signal their child processes with kill(1); minimal images may lack procps.
[[ -x /bin/kill || -x /usr/bin/kill ]] || need_apt+=(procps)
if ((${#need_apt[@]})); then
  mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    step "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing system packages: ${need_apt[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi

# --- 2. Cargo tools ---------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-hakari >/dev/null; then
  step "installing cargo-hakari"
  cargo install --locked cargo-hakari
fi
if ! command -v just >/dev/null; then
  step "installing just"
  cargo install --locked just
fi
NEXTEST=1
command -v cargo-nextest >/dev/null || NEXTEST=0
# Garage: the real S3-compatible server the media-storage tests run against. Built once from
# crates.io into ~/.cache/hlsmark-tools (a debug build, ~10 min on 2 cores), reused afterwards.
if [[ -z "${HLSMARK_GARAGE:-}" ]]; then
  step "garage (S3 test server): build once, cached"
  HLSMARK_GARAGE=$(./scripts/ensure-garage.sh)
  export HLSMARK_GARAGE
fi

# --- 3. Front end (npm ci, build) -------------------------------------------------------------------
if [[ -f frontend/package.json ]]; then
  step "front end: npm ci + build"
  (cd frontend && { [[ -d node_modules && node_modules/.package-lock.json -nt package-lock.json ]] || npm ci --no-audit --no-fund; } && npm run --silent build)
fi

# --- 4. Gates ---------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check
step "hakari: generate --diff, manage-deps --dry-run, verify"
cargo hakari generate --diff
cargo hakari manage-deps --dry-run
cargo hakari verify
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- 5. Tests ---------------------------------------------------------------------------------------
step "Rust tests (unit, integration with real ffmpeg / redis-server)"
cargo build --workspace --locked --bins
if ((NEXTEST)); then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
if [[ -z "${HLSMARK_SKIP_BROWSER:-}" && -f frontend/package.json ]] && grep -q '"test:browser"' frontend/package.json; then
  step "browser tests (Playwright + Debian chromium)"
  HLSMARK_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/hlsmark"
  [[ $HLSMARK_BIN = /* ]] || HLSMARK_BIN="$ROOT/$HLSMARK_BIN"
  export HLSMARK_BIN
  # test/run-browser.mjs runs the suite file by file and retries a failing file once, as nextest
  # retries a Rust test (.config/nextest.toml): the files drive real players on 2 shared cores. A
  # pass on the second run is reported as FLAKY (the first failure is above it in the log); a file
  # that fails twice fails the run.
  (cd frontend && npm run --silent test:browser)
fi
step "all tests passed"
