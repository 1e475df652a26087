#!/usr/bin/env bash
# Run hlsmark without Docker: builds the player page if needed, then the release binary, then
# `hlsmark run` (generator + API + embedded store) on http://localhost:5000.
# Extra arguments go to `hlsmark run` (see `hlsmark run --help`); every flag has an HLSMARK_* variable.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null; then
  echo "hlsmark needs ffmpeg: sudo apt-get install -y ffmpeg" >&2
  exit 1
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
