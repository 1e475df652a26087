#!/usr/bin/env bash
# Every benchmark, one after another (about 10 minutes plus release builds). Figures go to stdout;
# the README's Performance section quotes a run of this script.
#
#   ./scripts/bench.sh            all
#   ./scripts/bench.sh store      one of: store, render, generator, api
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-all}
run() { [[ $want == all || $want == "$1" ]]; }
if run store; then
  echo "##### store: range query p50/p99 at 10k..1M markers, insert throughput (redb and Redis)"
  cargo bench -p hlsmark-store --bench store
fi
if run render; then
  echo "##### generator: frame synthesis at 1280x720 vs memcpy"
  cargo bench -p hlsmark-sources --bench render
fi
if run generator; then
  echo "##### generator: CPU and RSS while live at 1280x720@30"
  ./scripts/bench-generator.sh 30
fi
if run api; then
  echo "##### api: segments and playlists vs nginx, /markers p99 at 1M markers, RSS at 1000 connections"
  ./scripts/bench-api.sh
fi
