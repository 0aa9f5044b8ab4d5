#!/usr/bin/env bash
# Starts Envoy (from the project venv) with the Switchyard filter for the local stack.
#   envoy/run.sh [--policy envoy/policy.json] [--upstream CLUSTER=HOST:PORT ...]
# Without --upstream, the demo layout: every `*-v1` cluster -> $SWITCHYARD_BACKEND_V1
# (127.0.0.1:8101), every `*-v2` cluster -> $SWITCHYARD_BACKEND_V2 (127.0.0.1:8102).
# Listener $SWITCHYARD_ENVOY_LISTEN (127.0.0.1:10000), admin $SWITCHYARD_ENVOY_ADMIN
# (127.0.0.1:9901), collector $SWITCHYARD_COLLECTOR (127.0.0.1:9411); generated files in
# $SWITCHYARD_STATE (.demo/envoy). Change weights or sampling at run time with
# envoy/apply-policy.sh: no restart, no dropped request.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY=envoy/policy.json
UPSTREAMS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --policy) POLICY=$2; shift 2 ;;
    --upstream) UPSTREAMS+=(--upstream "$2"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
STATE=${SWITCHYARD_STATE:-.demo/envoy}
mkdir -p "$STATE"
PY=.venv/bin/python
[ -x "$PY" ] && [ -x .venv/bin/envoy ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
WASM=target/wasm32-wasip1/wasm-release/switchyard_filter.wasm
[ -f "$WASM" ] || scripts/build-filter.sh
if [ ${#UPSTREAMS[@]} -eq 0 ]; then
  while read -r c; do
    case "$c" in
      *-v1) UPSTREAMS+=(--upstream "$c=${SWITCHYARD_BACKEND_V1:-127.0.0.1:8101}") ;;
      *-v2) UPSTREAMS+=(--upstream "$c=${SWITCHYARD_BACKEND_V2:-127.0.0.1:8102}") ;;
      *) echo "cluster $c: give --upstream $c=HOST:PORT" >&2; exit 2 ;;
    esac
  done < <("$PY" -c 'import json,sys; [print(v["cluster"]) for m in json.load(open(sys.argv[1]))["models"].values() for v in m["versions"]]' "$POLICY" | sort -u)
fi
"$PY" envoy/render.py filter --policy "$POLICY" --wasm "$WASM" --out "$STATE/filter.yaml" >/dev/null
"$PY" envoy/render.py bootstrap --policy "$POLICY" --out "$STATE/envoy.yaml" --ecds "$STATE/filter.yaml" \
  --listen "${SWITCHYARD_ENVOY_LISTEN:-127.0.0.1:10000}" --admin "${SWITCHYARD_ENVOY_ADMIN:-127.0.0.1:9901}" \
  --collector "${SWITCHYARD_COLLECTOR:-127.0.0.1:9411}" "${UPSTREAMS[@]}"
exec .venv/bin/envoy -c "$STATE/envoy.yaml" --disable-hot-restart --log-level "${SWITCHYARD_ENVOY_LOG_LEVEL:-warn}"
