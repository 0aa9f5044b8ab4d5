#!/usr/bin/env bash
# GPU tests: the backend on CUDA (device reported, golden outputs, batched == single,
# GPU metrics). Run on a machine with an NVIDIA GPU after scripts/setup.sh; or, on a GPU
# machine without Rust, with a test binary built elsewhere:
#   LD_LIBRARY_PATH=<torch>/lib SWITCHYARD_BACKEND_BIN=<switchyard-backend> <gpu test binary> --ignored
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sy_need_setup
step "GPU tests (cargo test -p switchyard-backend --test gpu -- --ignored)"
cargo test -p switchyard-backend --test gpu -- --ignored --test-threads 1 --nocapture
