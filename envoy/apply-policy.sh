#!/usr/bin/env bash
# Applies a filter policy to the running Envoy (ECDS: the watched file is replaced
# atomically). It is checked first, and refused with the reason when it is invalid or when
# the running Envoy could not serve it (a renamed routing header, a cluster its bootstrap
# lacks: those need envoy/run.sh to restart Envoy). Envoy validates it once more through the
# filter: a policy it refuses leaves the running one in place, and Envoy's log says why.
# A guard epoch older than the one in force is moved forward (and said so); afterwards every
# version the guard holds out of the split is named, with since when and why.
#   envoy/apply-policy.sh POLICY.json
# Uses $SWITCHYARD_STATE (.demo/envoy) and $SWITCHYARD_ENVOY_ADMIN (127.0.0.1:9901), as run.sh.
# shellcheck source=../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
[ $# -eq 1 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
POLICY=$1
[ -f "$POLICY" ] || die "no policy file at $POLICY"
STATE=${SWITCHYARD_STATE:-.demo/envoy}
ADMIN=${SWITCHYARD_ENVOY_ADMIN:-127.0.0.1:9901}
POLICY_BIN=$(sy_bin switchyard-policy)
"$POLICY_BIN" check "$POLICY"
curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null \
  || die "no running Envoy answers at $ADMIN: start one with envoy/run.sh (or scripts/demo.sh --stay) first"
[ -f "$STATE/envoy.yaml" ] || die "no $STATE/envoy.yaml: the Envoy at $ADMIN was not started by envoy/run.sh with SWITCHYARD_STATE=$STATE"
stat() { # one ECDS counter of the switchyard filter
  local out
  out=$(curl -fsS "http://$ADMIN/stats?filter=extension_config_discovery.http_filter.switchyard.$1\$") \
    || die "cannot read Envoy's stats at $ADMIN"
  awk '{n += $2} END {print n + 0}' <<<"$out"
}
before_ok=$(stat update_success)
before_bad=$(( $(stat update_rejected) + $(stat update_failure) ))
"$POLICY_BIN" render filter --policy "$POLICY" --wasm "$SY_WASM" --bootstrap "$STATE/envoy.yaml" >/dev/null
for _ in $(seq 1 100); do
  if [ "$(stat update_success)" != "$before_ok" ]; then
    echo "applied: Envoy runs the new policy"
    # The filter's guard shows its latches at its next tick (100 ms).
    sleep 0.5
    curl -fsS "http://$ADMIN/stats/prometheus?filter=switchyard_guard_out" | "$POLICY_BIN" held-out \
      || echo "apply-policy.sh: could not read what the guard holds out from $ADMIN" >&2
    exit 0
  fi
  if [ $(( $(stat update_rejected) + $(stat update_failure) )) != "$before_bad" ]; then
    die "REFUSED: Envoy keeps the previous policy; see Envoy's log for the problems"
  fi
  sleep 0.1
done
die "no answer from Envoy at $ADMIN within 10 s"
