#!/usr/bin/env bash
# The local demo stack, from a fresh clone: installs what is missing, builds, generates the
# demo models, and runs the data plane on loopback:
#   client -> Envoy :10000 (Switchyard filter: split, shadow, sampling, SLOs)
#          -> mutual TLS -> backend v1 :8101 (mlp:v1, resnet18:v1) | backend v2 :8102 (mlp:v2, resnet18:v2)
#   samples -> mutual TLS -> collector :9411 (/metrics on :9413) -> .demo/samples.jsonl
#          -> drift monitor :9412 (switchyard-monitor watch); certificates in .demo/certs
#   Prometheus :9090 (scrapes Envoy and the backends; SLO, canary, cost rules) -> Alertmanager :9093
#   the rollout controller :9950 (switchyard-rollout run): the rollout console and its API
# then drives traffic, changes the canary weight at run time, crashes the canary (the filter's
# guard takes it out), restarts it and promotes it with switchyard-rollout, runs an offline
# batch job, drives input drift (the monitor flags the shifted features, the drift alert fires),
# prints what came back and where the metrics are, and stops everything cleanly.
#   scripts/demo.sh           run and stop
#   scripts/demo.sh --quick   the same steps with shorter traffic phases (what CI runs)
#   scripts/demo.sh --stay    leave the stack running until Ctrl-C
# This script sets up and builds; the steps after the build are switchyard-demo's (demo/),
# which it runs with the same arguments.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for arg in "$@"; do
  case "$arg" in
    --stay | --quick) ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
# Checked here too, before the long first build; switchyard-demo checks them again (PORTS in
# demo/src/demo.rs, the list it listens on).
PORTS=("backend v1=8101" "backend v1 gRPC=8111" "backend v1 admin=8201" "backend v2=8102" "backend v2 gRPC=8112"
  "backend v2 admin=8202" "collector=9411" "collector admin=9413"
  "drift monitor=9412" "rollout console=9950" "Envoy=10000" "Envoy admin=9901" "Prometheus=9090" "Alertmanager=9093" "alert webhook=9095")

step "checking that the demo's ports are free"
sy_ports_free "${PORTS[@]}"

step "set-up (scripts/setup.sh)"
scripts/setup.sh
T_SETUP=$SECONDS

step "building (release; the first build compiles the libtorch bindings and takes a few minutes)"
# Only the binaries the demo runs (not the whole workspace: no benchmarks, drills or tests),
# the filter, and the rollout console.
cargo build --release --quiet --bin switchyard-demo --bin switchyard-backend --bin switchyard-collector \
  --bin switchyard-monitor --bin switchyard-policy --bin switchyard-rollout --bin switchyard-load \
  --bin switchyard-pager
sy_filter >/dev/null
sy_console >/dev/null
T_BUILD=$SECONDS
steps_done

SWITCHYARD_DEMO_SETUP_SECONDS=$T_SETUP SWITCHYARD_DEMO_BUILD_SECONDS=$T_BUILD exec "$SY_TARGET/release/switchyard-demo" "$@"
