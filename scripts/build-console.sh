#!/usr/bin/env bash
# Builds the rollout console into target/console: console/web's page and the policy crate
# compiled to WebAssembly with its wasm-bindgen glue (switchyard-rollout run serves them).
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dir=$(sy_console)
echo "console: ${dir#"$SY_ROOT"/} ($(( $(stat -c %s "$dir/pkg/switchyard_console_bg.wasm") / 1024 )) KiB of WebAssembly)"
