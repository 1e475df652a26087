#!/usr/bin/env bash
# Run hlsmark without Docker: builds the player page if needed, then the release binary, then
# `hlsmark run` (ingest + API + embedded store) on http://localhost:5000. Installs ffmpeg (and
# node/npm for the page) first when they are missing and it runs as root with apt-get.
# Extra arguments go to `hlsmark run` (see `hlsmark run --help`); every flag has an HLSMARK_* variable:
#   ./scripts/run.sh --source rtsp://user:pass@camera/stream
#   ./scripts/run.sh --config examples/hlsmark.toml
set -euo pipefail
cd "$(dirname "$0")/.."
# What the README's run command needs, installed on a fresh Debian/Ubuntu machine when we are
# root with apt-get (as ./scripts/test.sh does), else named in one message. Each is detected by a
# command, so a machine that has it from elsewhere is left alone. npm only when neither node nor
# npm exists: Debian's npm package conflicts with nodejs from other repositories (nodesource).
need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
if [[ ! -f frontend/dist/index.html ]] && ! command -v npm >/dev/null && ! command -v node >/dev/null; then
  need_apt+=(nodejs npm)
fi
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${need_apt[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "hlsmark needs: ${need_apt[*]}" >&2
    echo "install with: sudo apt-get install -y --no-install-recommends ${need_apt[*]}   (then rerun $0)" >&2
    command -v ffmpeg >/dev/null || exit 1
  fi
fi
if [[ ! -f frontend/dist/index.html || frontend/package-lock.json -nt frontend/dist/index.html || -n "$(find frontend/src -newer frontend/dist/index.html 2>/dev/null | head -1)" ]]; then
  if command -v npm >/dev/null; then
    echo "building the player page (npm ci && npm run build in frontend/)" >&2
    (cd frontend && npm ci --no-audit --no-fund && npm run build)
  else
    echo "warning: npm not found; the player page is not built (install nodejs and npm, then rerun)" >&2
  fi
fi
cargo build --release --locked -p hlsmark
export HLSMARK_TOKEN=${HLSMARK_TOKEN:-hlsmark-dev-token-change-me}
exec "${CARGO_TARGET_DIR:-target}/release/hlsmark" run "$@"
