#!/usr/bin/env bash
# Builds the Envoy filter: target/wasm32-wasip1/wasm-release/switchyard_filter.wasm
#   scripts/build-filter.sh --failpoints   the chaos drills' build with failpoints instead,
#                                          target/failpoints/… (never deploy it)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in
  "") wasm=$(sy_filter) ;;
  --failpoints) wasm=$(sy_filter_failpoints) ;;
  *) die "usage: scripts/build-filter.sh [--failpoints]" ;;
esac
echo "filter: ${wasm#"$SY_ROOT"/} ($(( $(stat -c %s "$wasm") / 1024 )) KiB)"
