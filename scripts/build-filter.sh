#!/usr/bin/env bash
# Builds the Envoy filter: target/wasm32-wasip1/wasm-release/switchyard_filter.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p switchyard-filter --target wasm32-wasip1 --profile wasm-release
wasm=target/wasm32-wasip1/wasm-release/switchyard_filter.wasm
echo "filter: $wasm ($(( $(stat -c %s "$wasm") / 1024 )) KiB)"
