#!/usr/bin/env bash
# The benchmark suite (not tests; crate bench/, binary switchyard-bench): builds in release mode, starts what each benchmark needs, and
# regenerates its section of docs/benchmarks.md (charts under docs/bench/).
#   scripts/bench.sh [all|backend|filter|generator|sweep] [extra arguments for that benchmark]
#   backend:   raw libtorch ceiling vs served throughput, batching on/off, serving overhead (~5 min)
#   filter:    backend direct vs Envoy without a filter, with an empty wasm filter and with ours:
#              latency, saturation, Envoy CPU and instructions per request, memory (~8 min)
#   generator: switchyard-load vs wrk on one core; open-loop schedule accuracy (~1 min)
#   sweep:     saturation sweep (throughput vs latency) per model, with charts (~2 min)
#   all:       all four, in that order (~15 min)
# Keep the machine otherwise idle while it runs: the results are ratios measured side by side,
# but a busy neighbour still blurs them.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WHICH=${1:-all}
[ $# -gt 0 ] && shift
case "$WHICH" in
  all|backend|filter|generator|sweep) ;;
  *) echo "unknown benchmark '$WHICH': all, backend, filter, generator or sweep" >&2; exit 2 ;;
esac
if [ "$WHICH" = all ] && [ $# -gt 0 ]; then
  echo "extra arguments go to one benchmark: scripts/bench.sh <name> $*" >&2; exit 2
fi
step "set-up (scripts/setup.sh)"
scripts/setup.sh
step "building (release)"
sy_build_release
sy_filter >/dev/null
# The empty filter bench-filter compares against.
cargo build --quiet -p switchyard-filter --target wasm32-wasip1 --profile wasm-release --example noop
BENCH=$(sy_bin switchyard-bench)
for b in backend filter generator sweep; do
  if [ "$WHICH" = all ] || [ "$WHICH" = "$b" ]; then
    step "benchmark: $b"
    pin=()
    # bench-filter gives the Envoys CPU 1 (--envoy-cpus); the generator and the backend take CPU 0.
    if [ "$b" = filter ] && [ "$(nproc)" -ge 2 ]; then pin=(taskset -c 0); fi
    "${pin[@]}" "$BENCH" "$b" --reproduce "scripts/bench.sh $b${*:+ $*}" "$@"
  fi
done
echo "==> results: docs/benchmarks.md"
