#!/usr/bin/env bash
# Installs whatever is missing for building, testing and running the demo. Idempotent: a
# second run only checks. Every step says what it does; a failing step says which and why,
# and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv

current=""
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "setup: FAILED at step: ${current} (exit $rc); see the output above" >&2; fi' EXIT
step() { current=$1; echo "==> $1"; }

step "Rust toolchain (pinned in rust-toolchain.toml) with the wasm32-wasip1 target"
command -v rustup >/dev/null || { echo "rustup is not installed: install Rust 1.95.0 via rustup first" >&2; exit 1; }
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain list | grep -q "^${toolchain}" || rustup toolchain install "$toolchain" --profile minimal
rustup component list --toolchain "$toolchain" --installed | grep -q '^clippy' || rustup component add --toolchain "$toolchain" clippy rustfmt
rustup target list --toolchain "$toolchain" --installed | grep -qx wasm32-wasip1 || rustup target add --toolchain "$toolchain" wasm32-wasip1

step "Python venv (.venv) with torch, envoy, tritonclient (scripts/requirements.txt)"
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  echo "    installing (torch with its CUDA libraries is ~4.6 GB; about a minute on a good link)"
  "$VENV/bin/python" -m pip install --quiet --progress-bar off -r scripts/requirements.txt
  echo "$want" > "$VENV/.requirements.sha256"
else
  echo "    up to date"
fi

step "libtorch link for cargo (.venv/libtorch, read by .cargo/config.toml)"
torch_dir=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$torch_dir" "$VENV/libtorch"
test -f "$VENV/libtorch/lib/libtorch_cpu.so" || { echo "no libtorch_cpu.so under $torch_dir/lib" >&2; exit 1; }
"$VENV/bin/envoy" --version >/dev/null

step "Prometheus, promtool, Alertmanager, amtool; wrk and valgrind for the benchmarks (Debian packages)"
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
   || ! command -v prometheus-alertmanager >/dev/null || ! command -v amtool >/dev/null \
   || ! command -v wrk >/dev/null || ! command -v callgrind_control >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # The packages' services are not wanted: the demo and tests run their own on loopback.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager wrk valgrind >/dev/null
else
  echo "    present: $(prometheus --version 2>&1 | head -1)"
fi

step "Demo models and golden vectors (models/generate.py)"
"$VENV/bin/python" models/generate.py

current=""
echo "==> setup complete"
