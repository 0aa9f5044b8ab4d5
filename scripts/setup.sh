#!/usr/bin/env bash
# Installs whatever is missing for building, testing and running the demo. Idempotent: a
# second run only checks (a few seconds). Every step says what it does; a failing step says
# which, with the command and its error output, and the script exits non-zero.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECONDS=0

step "Rust toolchain (pinned in rust-toolchain.toml) with the wasm32-wasip1 (filter) and wasm32-unknown-unknown (console) targets"
command -v rustup >/dev/null || die "rustup is not installed: install it (https://rustup.rs), then run this again"
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain list | grep -q "^${toolchain}" || rustup toolchain install "$toolchain" --profile minimal
rustup component list --toolchain "$toolchain" --installed | grep -q '^clippy' || rustup component add --toolchain "$toolchain" clippy rustfmt
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  rustup target list --toolchain "$toolchain" --installed | grep -qx "$target" || rustup target add --toolchain "$toolchain" "$target"
done

step "wasm-bindgen CLI, the version of the console's wasm-bindgen crate (Cargo.lock)"
bindgen=$(sy_wasm_bindgen_version)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen" ]; then
  echo "    installing wasm-bindgen-cli $bindgen (cargo install: a few minutes on 2 cores, once)"
  # Not --locked: the CLI's own lock file can name crate versions the registry does not serve yet.
  quietly cargo install wasm-bindgen-cli --version "$bindgen"
else
  echo "    present: wasm-bindgen $bindgen"
fi

step "Python venv (.venv) with torch, envoy, tritonclient, scipy (scripts/requirements.txt)"
command -v python3 >/dev/null || die "python3 is not installed: apt-get install python3 python3-venv"
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$SY_PY" ]; then
  python3 -m venv "$SY_VENV"
fi
if [ "$(cat "$SY_VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  quietly "$SY_PY" -m pip install --upgrade pip
  echo "    installing (torch with its CUDA libraries is ~4.6 GB; about a minute on a good link)"
  "$SY_PY" -m pip install --quiet --progress-bar off -r scripts/requirements.txt
  echo "$want" > "$SY_VENV/.requirements.sha256"
else
  echo "    up to date"
fi

step "libtorch link for cargo (.venv/libtorch, read by .cargo/config.toml)"
torch_dir=$("$SY_PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$torch_dir" "$SY_VENV/libtorch"
test -f "$SY_VENV/libtorch/lib/libtorch_cpu.so" || die "no libtorch_cpu.so under $torch_dir/lib"
quietly "$SY_VENV/bin/envoy" --version

step "Debian packages: Prometheus, promtool, Alertmanager, amtool; protoc for the gRPC code generation; curl and ss for the scripts; shellcheck, chromium and node for the tests; wrk and valgrind for the benchmarks"
# command -> package
declare -A wanted=([prometheus]=prometheus [promtool]=prometheus [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager [protoc]=protobuf-compiler [curl]=curl [ss]=iproute2 [shellcheck]=shellcheck [wrk]=wrk
  [callgrind_control]=valgrind [chromium]=chromium [node]=nodejs [npm]=npm)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${wanted[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "    installing: ${missing[*]}"
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  quietly "${SUDO[@]}" apt-get update -qq
  # The packages' services are not wanted: the demo and tests run their own on loopback.
  quietly "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "    present: $(prometheus --version 2>&1 | head -n 1)"
fi

step "playwright-core for the console's browser tests (console/browser; no browser download: Debian's chromium)"
want=$(sha256sum console/browser/package-lock.json | cut -d' ' -f1)
if [ "$(cat console/browser/node_modules/.lock.sha256 2>/dev/null)" != "$want" ]; then
  quietly npm ci --prefix console/browser --no-audit --no-fund
  echo "$want" > console/browser/node_modules/.lock.sha256
  echo "    installed: playwright-core $(node -p 'require("./console/browser/node_modules/playwright-core/package.json").version')"
else
  echo "    up to date"
fi

step "Demo models and golden vectors (models/generate.py)"
"$SY_PY" models/generate.py

steps_done
echo "==> setup complete ($(sy_elapsed "$SECONDS"))"
