#!/usr/bin/env bash
# Prints the path of a garage binary (the S3-compatible object store the media-storage tests
# run against), building it from crates.io into a cache directory only when it is missing, so a
# warm CI run does not rebuild it. The binary is a test tool only: garage is AGPL-3.0 and is never
# linked into hlsmark.
#
# Order: $HLSMARK_GARAGE if set and executable; else the cached build; else build it now.
# A debug build without debug info: a test server needs no optimisation and this halves the build.
# Only the S3 API and the LMDB metadata engine: no sqlite, k2v or metrics to compile.
#
# GARAGE_PROFILE=bench (opt-in, for benchmarks only; CI keeps the debug build): an optimised
# build in a cache directory of its own (`garage-<version>-bench`), so latency figures measure
# Garage as a user runs it rather than its unoptimised test build. opt-level 2, 16 codegen
# units, no LTO and no debug info: most of the speed of garage's own release profile (which has
# LTO and one codegen unit) for a fraction of its build time. HLSMARK_GARAGE still wins.
set -euo pipefail

GARAGE_VERSION=2.5.0

if [[ -n "${HLSMARK_GARAGE:-}" ]]; then
  if [[ -x "$HLSMARK_GARAGE" ]]; then
    echo "$HLSMARK_GARAGE"
    exit 0
  fi
  echo "ensure-garage: HLSMARK_GARAGE=$HLSMARK_GARAGE is not an executable file" >&2
  exit 1
fi

profile=${GARAGE_PROFILE:-test}
case $profile in
  test) suffix="" ;;
  bench) suffix="-bench" ;;
  *) echo "ensure-garage: GARAGE_PROFILE=$profile: expected test (default) or bench" >&2; exit 1 ;;
esac
root="${XDG_CACHE_HOME:-$HOME/.cache}/hlsmark-tools/garage-$GARAGE_VERSION$suffix"
bin="$root/bin/garage"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

if [[ $profile == bench ]]; then
  build=(--config 'profile.release.opt-level=2' --config 'profile.release.codegen-units=16'
    --config 'profile.release.debug=false' --config 'profile.release.lto=false'
    --config 'profile.release.incremental=false')
else
  build=(--debug --config 'profile.dev.debug=false')
fi
echo "ensure-garage: building garage $GARAGE_VERSION ($profile) into $root (once; about 10-20 min on 2 cores)" >&2
start=$(date +%s)
# The build's own target directory sits in the cache too: an interrupted build resumes.
CARGO_TARGET_DIR="$root/build" cargo install garage --version "=$GARAGE_VERSION" --locked \
  --root "$root" --no-default-features --features bundled-libs,lmdb "${build[@]}" >&2
rm -rf "$root/build"
echo "ensure-garage: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
