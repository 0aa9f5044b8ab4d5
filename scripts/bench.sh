#!/usr/bin/env bash
# Benchmarks (not tests): builds in release mode and regenerates sections of docs/benchmarks.md.
#   scripts/bench.sh [backend|filter|all] [extra arguments for that benchmark]
#   backend: raw libtorch ceiling vs served throughput, batching on/off, serving overhead (~5 min)
#   filter:  backend direct vs Envoy without/with the filter: latency, saturation, memory (~4 min)
# Keep the machine otherwise idle while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
[ $# -gt 0 ] && shift
scripts/setup.sh
echo "==> building (release)"
cargo build --release --quiet
scripts/build-filter.sh
case "$WHICH" in
  backend|all) target/release/switchyard-load bench-backend --reproduce "scripts/bench.sh backend${*:+ $*}" "$@" ;;&
  filter|all) target/release/switchyard-load bench-filter --reproduce "scripts/bench.sh filter${*:+ $*}" "$@" ;;
  backend) ;;
  *) echo "unknown benchmark '$WHICH': backend, filter or all" >&2; exit 2 ;;
esac
