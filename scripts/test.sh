#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (scripts/setup.sh), then
# format, lints and every test against the real parts (libtorch and the generated models,
# tritonclient, Envoy with the built filter). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> building the filter (wasm32-wasip1) and the binaries the end-to-end tests start"
scripts/build-filter.sh
cargo build --quiet

echo "==> cargo test"
# Integration tests start real servers; two at a time suit a 2-core machine.
cargo test -- --test-threads 2

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo
  echo "!!! GPU tests NOT run: no NVIDIA GPU on this machine. They are the 'ignored' tests above;"
  echo "!!! on a GPU machine run: scripts/gpu-tests.sh"
else
  echo "==> GPU tests (a GPU is present)"
  cargo test -p switchyard-backend --test gpu -- --ignored --test-threads 1
fi
