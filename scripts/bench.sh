#!/usr/bin/env bash
# The benchmark suite (not tests): builds in release mode, starts what each benchmark needs, and
# regenerates its section of docs/benchmarks.md (charts under docs/bench/).
#   scripts/bench.sh [all|backend|filter|generator|sweep] [extra arguments for that benchmark]
#   backend:   raw libtorch ceiling vs served throughput, batching on/off, serving overhead (~5 min)
#   filter:    backend direct vs Envoy without/with the filter: latency, saturation, memory (~4 min)
#   generator: switchyard-load vs wrk on one core; open-loop schedule accuracy (~1 min)
#   sweep:     saturation sweep (throughput vs latency) per model, with charts (~2 min)
#   all:       all four, in that order (~12 min)
# Keep the machine otherwise idle while it runs: the results are ratios measured side by side,
# but a busy neighbour still blurs them.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
[ $# -gt 0 ] && shift
case "$WHICH" in
  all|backend|filter|generator|sweep) ;;
  *) echo "unknown benchmark '$WHICH': all, backend, filter, generator or sweep" >&2; exit 2 ;;
esac
if [ "$WHICH" = all ] && [ $# -gt 0 ]; then
  echo "extra arguments go to one benchmark: scripts/bench.sh <name> $*" >&2; exit 2
fi
scripts/setup.sh
echo "==> building (release)"
cargo build --release --quiet
scripts/build-filter.sh
LOAD=target/release/switchyard-load
for b in backend filter generator sweep; do
  if [ "$WHICH" = all ] || [ "$WHICH" = "$b" ]; then
    echo "==> benchmark: $b"
    "$LOAD" "bench-$b" --reproduce "scripts/bench.sh $b${*:+ $*}" "$@"
  fi
done
echo "==> results: docs/benchmarks.md"
