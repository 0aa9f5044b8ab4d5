#!/usr/bin/env bash
# The backend benchmark (not a test): builds in release mode, then measures in one run the raw
# libtorch ceiling, served throughput with batching on and off, and the serving overhead, and
# writes docs/benchmarks.md. Extra arguments go to `switchyard-load bench-backend` (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> building (release)"
cargo build --release --quiet -p switchyard-backend -p switchyard-load
echo "==> benchmarking (about 4 minutes; keep the machine otherwise idle)"
target/release/switchyard-load bench-backend --reproduce "scripts/bench.sh${*:+ $*}" "$@"
