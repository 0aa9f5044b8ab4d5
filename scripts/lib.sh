# shellcheck shell=bash
# Shared by every script in the project (sourced, never run): loud failures, step names,
# locating and building binaries, checking ports. Source it right after the shebang:
#   . "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# It sets strict mode (-Eeuo pipefail) and changes to the repository root.

set -Eeuo pipefail
# Command substitutions fail like any other command, instead of passing on partial output.
shopt -s inherit_errexit
SY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$SY_ROOT"
SY_SCRIPT=${SY_SCRIPT:-$(basename "$0")}
SY_STEP=""
SY_TARGET=${CARGO_TARGET_DIR:-$SY_ROOT/target}
SY_WASM=$SY_TARGET/wasm32-wasip1/wasm-release/switchyard_filter.wasm
SY_WASM_FAILPOINTS=$SY_TARGET/failpoints/wasm32-wasip1/wasm-release/switchyard_filter.wasm
SY_VENV=$SY_ROOT/.venv
SY_PY=$SY_VENV/bin/python

# `step "what"` names the work that follows; a failure inside it is reported with that name.
step() {
  SY_STEP=$1
  echo "==> $1"
}

# After the last step: later failures are not blamed on it.
steps_done() {
  SY_STEP=""
}

# Any failing command (with set -e in force) lands here: say which step, which command, where,
# and with which status. The command's own stderr has already been printed above it.
sy_on_err() {
  local rc=$1 cmd=$2 src=$3 line=$4
  trap - ERR
  echo >&2
  echo "$SY_SCRIPT: FAILED${SY_STEP:+ at step \"$SY_STEP\"}: \`$cmd\` exited $rc ($src:$line)" >&2
  echo "$SY_SCRIPT: its error output, if any, is just above" >&2
}
trap 'sy_on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]#"$SY_ROOT"/}" "$LINENO"' ERR

die() {
  echo "$SY_SCRIPT: $*" >&2
  exit 1
}

# `quietly CMD...` runs a noisy command with its output kept aside; on failure the output is
# shown (last 40 lines) together with the command, so nothing fails silently.
quietly() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$SY_SCRIPT: \`$*\` exited $rc; its output:" >&2
    tail -n 40 "$log" | sed 's/^/    /' >&2
  fi
  rm -f "$log"
  return "$rc"
}

# Binaries. Every script gets its binaries from here, always in the release profile, and
# always through cargo, which rebuilds what is stale and does nothing (≈1 s) when it is fresh:
# so no script depends on what some earlier command happened to build.
#   sy_bin NAME        -> prints the path of target/release/NAME, built if missing or stale
#   sy_build_release   -> builds every native binary of the workspace at once (drills, benchmarks)
#   sy_filter          -> prints the path of the filter's .wasm, built if missing or stale
#   sy_filter_failpoints -> the same for the drills' build with failpoints (never the product)
#   sy_console         -> prints the directory of the rollout console's built files (below)
#   sy_wasm_bindgen_version -> the wasm-bindgen version the console's CLI must match
sy_build_release() {
  cargo build --release --quiet
}
sy_bin() {
  cargo build --release --quiet --bin "$1" >&2
  local path=$SY_TARGET/release/$1
  [ -x "$path" ] || die "cargo built $1 but $path is missing"
  echo "$path"
}
sy_filter() {
  cargo build --quiet -p switchyard-filter --target wasm32-wasip1 --profile wasm-release >&2
  [ -f "$SY_WASM" ] || die "cargo built the filter but $SY_WASM is missing"
  echo "$SY_WASM"
}
# The drills' filter with failpoints (filter-wasm/src/failpoints.rs), in a target directory
# of its own so that it never takes the product .wasm's place.
sy_filter_failpoints() {
  cargo build --quiet -p switchyard-filter --target wasm32-wasip1 --profile wasm-release \
    --features failpoints --target-dir "$SY_TARGET/failpoints" >&2
  [ -f "$SY_WASM_FAILPOINTS" ] || die "cargo built the failpoint filter but $SY_WASM_FAILPOINTS is missing"
  echo "$SY_WASM_FAILPOINTS"
}

# The rollout console (console/): the policy crate compiled for the browser, its JS glue
# written by the wasm-bindgen CLI (set-up installs the crate's exact version), and the page's
# files, all in target/console (what `switchyard-rollout run --console-dir` serves by default).
SY_CONSOLE=$SY_TARGET/console
# The console's wasm-bindgen crate version in Cargo.lock: the CLI must be exactly that one
# (set-up installs it; so does the image's build).
sy_wasm_bindgen_version() {
  local version
  version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' "$SY_ROOT/Cargo.lock")
  [ -n "$version" ] || die "no wasm-bindgen in Cargo.lock"
  echo "$version"
}
sy_console() {
  cargo build --quiet -p switchyard-console --target wasm32-unknown-unknown --profile console-release >&2
  local wasm=$SY_TARGET/wasm32-unknown-unknown/console-release/switchyard_console.wasm
  [ -f "$wasm" ] || die "cargo built the console but $wasm is missing"
  command -v wasm-bindgen >/dev/null || die "wasm-bindgen is not installed: run scripts/setup.sh"
  mkdir -p "$SY_CONSOLE/pkg"
  wasm-bindgen --target web --no-typescript --out-dir "$SY_CONSOLE/pkg" "$wasm" >&2
  cp console/web/index.html console/web/console.js console/web/console.css "$SY_CONSOLE/"
  echo "$SY_CONSOLE"
}

# The project's venv (Envoy, torch, tritonclient) must exist; scripts that need it and may be
# run first on a fresh machine call this, which runs the idempotent set-up when it is missing.
sy_need_setup() {
  if [ ! -x "$SY_PY" ] || [ ! -x "$SY_VENV/bin/envoy" ] || [ ! -e "$SY_VENV/libtorch" ]; then
    echo "==> the project is not set up yet: running scripts/setup.sh"
    "$SY_ROOT/scripts/setup.sh"
  fi
}

# `sy_port_holder PORT` prints who listens on a TCP port of this machine ("" when it is free).
sy_port_holder() {
  local port=$1 out
  if command -v ss >/dev/null 2>&1; then
    out=$(ss -Hltnp "( sport = :$port )" 2>/dev/null || true)
    [ -n "$out" ] || return 0
    # users:(("envoy",pid=123,fd=40)) -> the process, and its command line when readable.
    local pid name
    pid=$(grep -o 'pid=[0-9]*' <<<"$out" | head -n 1 | cut -d= -f2 || true)
    name=$(grep -o '(("[^"]*"' <<<"$out" | head -n 1 | cut -d'"' -f2 || true)
    if [ -n "$pid" ]; then
      local cmdline
      cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c 1-160 || true)
      echo "pid $pid ($name): ${cmdline:-?}"
    else
      echo "a process this user cannot see"
    fi
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "an unknown process (install iproute2 for 'ss' to see which)"
  fi
}

# `sy_ports_free NAME=PORT...` fails, naming every taken port and its holder, unless all are free.
sy_ports_free() {
  local taken=0 item holder
  for item in "$@"; do
    holder=$(sy_port_holder "${item#*=}")
    if [ -n "$holder" ]; then
      echo "$SY_SCRIPT: port ${item#*=} (for ${item%%=*}) is already in use by $holder" >&2
      taken=1
    fi
  done
  [ "$taken" -eq 0 ] || die "stop those processes (or pick other ports), then run again"
}

# A number of seconds as "1m 23s".
sy_elapsed() {
  local s=$1
  if [ "$s" -ge 60 ]; then echo "$((s / 60))m $((s % 60))s"; else echo "${s}s"; fi
}
