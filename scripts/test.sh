#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (scripts/setup.sh), then
# shell and Python lint, format, lints and every test against the real parts (libtorch and the
# generated models, tritonclient, Envoy with the built filter, Prometheus and Alertmanager).
# Stops at the first failure and names it.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECONDS=0

step "set-up (scripts/setup.sh)"
scripts/setup.sh
T_SETUP=$SECONDS

step "shellcheck (every shell script in the repository)"
is_shell() { # a *.sh file, or one whose first line runs sh or bash
  case "$1" in
    *.sh) return 0 ;;
  esac
  local first=""
  if [ -f "$1" ]; then IFS= read -r first <"$1" || true; fi
  [[ $first =~ ^\#!.*[/\ ](ba)?sh([[:space:]]|$) ]]
}
scripts=()
while IFS= read -r f; do
  if is_shell "$f"; then scripts+=("$f"); fi
done < <(git ls-files)
shellcheck -x "${scripts[@]}"
echo "    ${#scripts[@]} scripts clean"

step "ruff (every tracked Python file, with ruff.toml)"
mapfile -t python_files < <(git ls-files '*.py')
"$SY_VENV/bin/ruff" check --quiet "${python_files[@]}"
echo "    ${#python_files[@]} Python files clean"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "building the filter (wasm32-wasip1), the empty filter, the console (wasm32-unknown-unknown) and the binaries the end-to-end tests start"
sy_filter >/dev/null
sy_console >/dev/null
# The empty filter stands for a filter that failed open in the hostile-input tests.
cargo build --quiet -p switchyard-filter --target wasm32-wasip1 --profile wasm-release --example noop
cargo build --quiet
T_BUILD=$SECONDS

step "cargo test"
# Integration tests start real servers; two at a time suit a 2-core machine.
cargo test --workspace -- --test-threads 2

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo
  echo "!!! GPU tests NOT run: no NVIDIA GPU on this machine. They are the 'ignored' tests above;"
  echo "!!! on a GPU machine run: scripts/gpu-tests.sh"
else
  step "GPU tests (a GPU is present)"
  cargo test -p switchyard-backend --test gpu -- --ignored --test-threads 1
fi
steps_done
echo "==> tests done in $(sy_elapsed "$SECONDS"): set-up $(sy_elapsed "$T_SETUP"), lints and build $(sy_elapsed $((T_BUILD - T_SETUP))), tests $(sy_elapsed $((SECONDS - T_BUILD)))"
