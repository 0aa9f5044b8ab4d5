#!/usr/bin/env bash
# Starts Envoy (from the project venv) with the Switchyard filter for the local stack.
#   envoy/run.sh [--policy envoy/policy.json] [--upstream CLUSTER=HOST:PORT ...]
#                [--grpc-upstream CLUSTER=HOST:PORT ...]
# Without --upstream, the demo layout: every `*-v1` cluster -> $SWITCHYARD_BACKEND_V1
# (127.0.0.1:8101) and its gRPC twin -> $SWITCHYARD_BACKEND_V1_GRPC (127.0.0.1:8111), every
# `*-v2` cluster -> $SWITCHYARD_BACKEND_V2 (127.0.0.1:8102) and $SWITCHYARD_BACKEND_V2_GRPC
# (127.0.0.1:8112). gRPC and REST share the listener.
# Listener $SWITCHYARD_ENVOY_LISTEN (127.0.0.1:10000), admin $SWITCHYARD_ENVOY_ADMIN
# (127.0.0.1:9901), collector $SWITCHYARD_COLLECTOR (127.0.0.1:9411); generated files in
# $SWITCHYARD_STATE (.demo/envoy). Change weights or sampling at run time with
# envoy/apply-policy.sh: no restart, no dropped request. Works on a fresh clone: it sets up
# and builds what is missing first.
# shellcheck source=../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
POLICY=envoy/policy.json
UPSTREAMS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --policy) POLICY=$2; shift 2 ;;
    --upstream) UPSTREAMS+=(--upstream "$2"); shift 2 ;;
    --grpc-upstream) UPSTREAMS+=(--grpc-upstream "$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ -f "$POLICY" ] || die "no policy file at $POLICY"
STATE=${SWITCHYARD_STATE:-.demo/envoy}
mkdir -p "$STATE"
sy_need_setup
POLICY_BIN=$(sy_bin switchyard-policy)
step "building the filter"
WASM=$(sy_filter)
step "rendering the Envoy bootstrap and the filter config from $POLICY into $STATE"
if [ ${#UPSTREAMS[@]} -eq 0 ]; then
  clusters=$("$POLICY_BIN" clusters "$POLICY")
  while read -r _model _version c; do
    case "$c" in
      *-v1) UPSTREAMS+=(--upstream "$c=${SWITCHYARD_BACKEND_V1:-127.0.0.1:8101}"
        --grpc-upstream "$c=${SWITCHYARD_BACKEND_V1_GRPC:-127.0.0.1:8111}") ;;
      *-v2) UPSTREAMS+=(--upstream "$c=${SWITCHYARD_BACKEND_V2:-127.0.0.1:8102}"
        --grpc-upstream "$c=${SWITCHYARD_BACKEND_V2_GRPC:-127.0.0.1:8112}") ;;
      *) die "cluster $c: give --upstream $c=HOST:PORT" ;;
    esac
  done <<<"$clusters"
fi
"$POLICY_BIN" render envoy --policy "$POLICY" --wasm "$WASM" --out-dir "$STATE" \
  --listen "${SWITCHYARD_ENVOY_LISTEN:-127.0.0.1:10000}" --admin "${SWITCHYARD_ENVOY_ADMIN:-127.0.0.1:9901}" \
  --collector "${SWITCHYARD_COLLECTOR:-127.0.0.1:9411}" "${UPSTREAMS[@]}" >/dev/null
step "starting Envoy"
exec "$SY_VENV/bin/envoy" -c "$STATE/envoy.yaml" --disable-hot-restart --log-level "${SWITCHYARD_ENVOY_LOG_LEVEL:-warn}"
