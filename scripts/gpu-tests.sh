#!/usr/bin/env bash
# GPU tests: the backend on CUDA (device reported, golden outputs, batched == single,
# GPU metrics). Run on a machine with an NVIDIA GPU after scripts/setup.sh; or, on a GPU
# machine without Rust, with a test binary built elsewhere:
#   LD_LIBRARY_PATH=<torch>/lib SWITCHYARD_BACKEND_BIN=<switchyard-backend> <gpu test binary> --ignored
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p switchyard-backend --test gpu -- --ignored --test-threads 1 --nocapture
