#!/usr/bin/env bash
# Builds the Envoy filter: target/wasm32-wasip1/wasm-release/switchyard_filter.wasm
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
wasm=$(sy_filter)
echo "filter: ${wasm#"$SY_ROOT"/} ($(( $(stat -c %s "$wasm") / 1024 )) KiB)"
