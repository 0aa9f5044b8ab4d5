#!/usr/bin/env bash
# The benchmark suite (not tests; crate bench/, binary switchyard-bench): builds in release mode, starts what each benchmark needs, and
# regenerates its section of docs/benchmarks.md (charts under docs/bench/).
#   scripts/bench.sh [all|backend|filter|tls|generator|sweep|peers|guard|drift|protocols|cold-start] [extra arguments for that benchmark]
#   backend:   raw libtorch ceiling vs served throughput, batching on/off, serving overhead (~5 min)
#   filter:    backend direct vs Envoy without a filter, with an empty wasm filter and with ours:
#              latency, saturation, Envoy CPU and instructions per request, memory (~8 min)
#   tls:       Envoy + the filter to a plain backend vs to one requiring mutual TLS vs with client
#              authentication (JWT, tenant, quota), side by side: latency, saturation, Envoy CPU
#              per request (~3 min)
#   generator: switchyard-load vs wrk on one core; open-loop schedule accuracy (~1 min)
#   sweep:     saturation sweep (throughput vs latency) per model, with charts (~2 min)
#   peers:     Switchyard vs KServe 0.21 and MLServer 1.7.1 on the same TorchScript models, same cells,
#              same load generator, interleaved, with ratios (~9 min; the first run installs the peers
#              into benchmark-only venvs under .cache/peers, a few minutes)
#   guard:     a canary killed under load in real Envoy, protected by the data-plane guard, by
#              switchyard-rollout alone, by a Flagger-equivalent analysis, or by nothing (time to
#              the last client error, failed requests), and 30 healthy canaries under 1-5% baseline
#              errors (false trips) (~6 min)
#   drift:     the drift monitor's streaming ingest rate, and evaluating 64 columns of a 10,000-row
#              window against a 100,000-row reference beside Evidently 0.7's DataDriftPreset on the
#              same data (time, and every decision compared) (~2 min; the first run installs
#              Evidently into a benchmark-only venv under .cache/peers, a minute or two)
#   protocols: REST JSON vs REST binary tensors vs gRPC on mlp and resnet18, straight to the
#              backend and through Envoy + the filter, against the raw forward ceiling (~5 min)
#   cold-start: each demo model version served by a fresh backend, 5 times: spawn to ready and to the
#              first inference, then SIGTERM (also docs/bench/cold-start.json) (~1 min)
#   all:       all ten, in that order (~38 min)
# Keep the machine otherwise idle while it runs: the results are ratios measured side by side,
# but a busy neighbour still blurs them.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WHICH=${1:-all}
[ $# -gt 0 ] && shift
case "$WHICH" in
  all|backend|filter|tls|generator|sweep|peers|guard|drift|protocols|cold-start) ;;
  *) echo "unknown benchmark '$WHICH': all, backend, filter, tls, generator, sweep, peers, guard, drift, protocols or cold-start" >&2; exit 2 ;;
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

# A benchmark-only venv per peer (their pins conflict: bench/peers/requirements-*.txt), never a
# product dependency. torch is not installed twice: a .pth file puts the project's .venv (the
# same torch 2.11.0 the backend links) after the venv's own packages on sys.path.
peer_venv() {
  local name=$1 dir=.cache/peers/$1 req=bench/peers/requirements-$1.txt con=bench/peers/constraints-$1.txt
  local want site
  want=$(cat "$req" "$con" | sha256sum | cut -d' ' -f1)
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  if [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "    installing $name into $dir ($req, pinned by $con)"
    quietly "$dir/bin/python" -m pip install --upgrade pip
    quietly "$dir/bin/python" -m pip install --progress-bar off -r "$req" -c "$con"
    echo "$want" > "$dir/.requirements.sha256"
  else
    echo "    $name: up to date ($dir)"
  fi
  site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$SY_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/switchyard-torch.pth"
  quietly "$dir/bin/python" -c 'import torch'
}
if [ "$WHICH" = all ] || [ "$WHICH" = peers ]; then
  step "peers' venvs (KServe, MLServer)"
  peer_venv kserve
  peer_venv mlserver
fi
if [ "$WHICH" = all ] || [ "$WHICH" = drift ]; then
  step "Evidently's benchmark-only venv"
  peer_venv evidently
fi

for b in backend filter tls generator sweep peers guard drift protocols cold-start; do
  if [ "$WHICH" = all ] || [ "$WHICH" = "$b" ]; then
    step "benchmark: $b"
    pin=()
    # bench-filter gives the Envoys CPU 1 (--envoy-cpus); the generator and the backend take CPU 0.
    if { [ "$b" = filter ] || [ "$b" = tls ]; } && [ "$(nproc)" -ge 2 ]; then pin=(taskset -c 0); fi
    "${pin[@]}" "$BENCH" "$b" --reproduce "scripts/bench.sh $b${*:+ $*}" "$@"
  fi
done
echo "==> results: docs/benchmarks.md"
