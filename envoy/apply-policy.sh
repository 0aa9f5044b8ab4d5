#!/usr/bin/env bash
# Applies a filter policy to the running Envoy (ECDS: the watched file is replaced
# atomically). Envoy validates it through the filter: a policy with problems is refused, the
# running one stays, and Envoy's log names every problem.
#   envoy/apply-policy.sh POLICY.json
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { sed -n '2,6p' "$0"; exit 2; }
STATE=${SWITCHYARD_STATE:-.demo/envoy}
ADMIN=${SWITCHYARD_ENVOY_ADMIN:-127.0.0.1:9901}
CHECK=$(ls target/release/switchyard-policy target/debug/switchyard-policy 2>/dev/null | head -1)
[ -n "$CHECK" ] || cargo build --quiet -p switchyard-policy
"${CHECK:-target/debug/switchyard-policy}" check "$1"
stat() { curl -fsS "http://$ADMIN/stats?filter=extension_config_discovery.http_filter.switchyard.$1\$" | awk '{print $2}'; }
before_ok=$(stat update_success); before_bad=$(( $(stat update_rejected) + $(stat update_failure) ))
.venv/bin/python envoy/render.py filter --policy "$1" --wasm target/wasm32-wasip1/wasm-release/switchyard_filter.wasm --out "$STATE/filter.yaml"
for _ in $(seq 1 100); do
  if [ "$(stat update_success)" != "$before_ok" ]; then echo "applied: Envoy runs the new policy"; exit 0; fi
  if [ $(( $(stat update_rejected) + $(stat update_failure) )) != "$before_bad" ]; then
    echo "REFUSED: Envoy keeps the previous policy; see Envoy's log for the problems" >&2; exit 1
  fi
  sleep 0.1
done
echo "no answer from Envoy at $ADMIN within 10 s" >&2; exit 1
