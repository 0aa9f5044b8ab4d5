#!/usr/bin/env bash
# Chaos drills on the local stack (crate drill/, binary switchyard-drill), release build:
#   scripts/drill.sh                 every drill; writes docs/drills.md and docs/drills/NAME/ (~12 min)
#   scripts/drill.sh list            the drills
#   scripts/drill.sh run NAME...     the named drills; drafts under target/drills/NAME/
# Each drill starts its own stack (Envoy with the filter, two mlp backends, the collector,
# Prometheus with the rules on drill time, Alertmanager, the webhook pager) on free loopback
# ports, so nothing else needs to be running. docs/incident-response/ has the playbooks.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SY_ROOT"
sy_need_setup
sy_filter >/dev/null
# The filter-crash drill runs Envoy on the build with failpoints.
SWITCHYARD_FAILPOINT_WASM=$(sy_filter_failpoints)
export SWITCHYARD_FAILPOINT_WASM
sy_build_release
if [ $# -eq 0 ]; then set -- all; fi
exec "$SY_TARGET/release/switchyard-drill" "$@"
