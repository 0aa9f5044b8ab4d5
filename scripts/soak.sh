#!/usr/bin/env bash
# The soak under churn (crate bench/, `switchyard-bench soak`), release build: the local stack
# (Envoy with the filter, two mlp backends, the collector, the drift monitor) for 30 minutes at
# 100 req/s while the policy churns (2 swaps a second, a guard epoch every fifth, a version added
# and removed every minute, the collector and the monitor restarted every 5 minutes, the canary's
# backend crashed and replaced every 10). Writes its section of docs/benchmarks.md and
# docs/bench/soak.json; fails when Envoy's memory or shared-data keys end more than 10% above
# their value after 5 minutes, a request goes unanswered or a sample is unaccounted for.
#   scripts/soak.sh [--minutes 30] [--rate 100] [--swaps-per-second 2] ...   (~32 min)
# The test command runs a one-minute version (e2e/tests/soak.rs).
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SY_ROOT"
sy_need_setup
sy_filter >/dev/null
sy_build_release
exec "$SY_TARGET/release/switchyard-bench" soak "$@"
