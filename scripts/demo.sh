#!/usr/bin/env bash
# The local demo, from a fresh clone: installs what is missing, builds, generates the demo
# models, starts the backend on them, drives real-time traffic at every model version, runs
# an offline batch job, shows what came back and where the metrics are, then stops cleanly.
#   scripts/demo.sh          run and stop
#   scripts/demo.sh --stay   leave the backend running until Ctrl-C
# Ports: SWITCHYARD_HTTP_ADDR (default 127.0.0.1:8000), SWITCHYARD_ADMIN_ADDR (127.0.0.1:8002).
set -euo pipefail
cd "$(dirname "$0")/.."
STAY=0
for arg in "$@"; do
  case "$arg" in
    --stay) STAY=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
export SWITCHYARD_HTTP_ADDR=${SWITCHYARD_HTTP_ADDR:-127.0.0.1:8000}
export SWITCHYARD_ADMIN_ADDR=${SWITCHYARD_ADMIN_ADDR:-127.0.0.1:8002}
DEMO=.demo
mkdir -p "$DEMO"

scripts/setup.sh

echo "==> building (release; the first build compiles libtorch bindings and takes a few minutes)"
cargo build --release --quiet -p switchyard-backend -p switchyard-load
BIN=target/release

echo "==> starting the backend on http://$SWITCHYARD_HTTP_ADDR (admin http://$SWITCHYARD_ADMIN_ADDR); log: $DEMO/backend.log"
"$BIN/switchyard-backend" serve --model-repository models/repo >"$DEMO/backend.out" 2>"$DEMO/backend.log" &
PID=$!
stop() {
  if kill -0 "$PID" 2>/dev/null; then
    echo "==> stopping the backend (SIGTERM: drains queued work, then exits)"
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" && echo "    stopped cleanly" || echo "    backend exited with status $?"
  fi
}
trap stop EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 600); do
  if curl -fsS "http://$SWITCHYARD_HTTP_ADDR/v2/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then echo "backend exited during start-up:" >&2; cat "$DEMO/backend.log" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "http://$SWITCHYARD_HTTP_ADDR/v2/health/ready" >/dev/null || { echo "backend not ready after 120 s; see $DEMO/backend.log" >&2; exit 1; }
for m in mlp resnet18; do
  curl -fsS "http://$SWITCHYARD_HTTP_ADDR/v2/models/$m" | "$PWD/.venv/bin/python" -c '
import json, sys
m = json.load(sys.stdin); p = m["parameters"]
print("    %s: versions %s, input %s, device %s, max batch %s" % (m["name"], m["versions"], m["inputs"][0]["shape"], p["device"], p["max_batch_size"]))'
done

echo "==> real-time traffic: concurrent clients per model version (latency measured by the client; batch sizes from the backend's metrics)"
for mv in mlp:v1 mlp:v2; do
  "$BIN/switchyard-load" closed --addr "$SWITCHYARD_HTTP_ADDR" --admin-addr "$SWITCHYARD_ADMIN_ADDR" \
    --model "${mv%%:*}" --version "${mv##*:}" --concurrency 32 --seconds 3
done
for mv in resnet18:v1 resnet18:v2; do
  "$BIN/switchyard-load" closed --addr "$SWITCHYARD_HTTP_ADDR" --admin-addr "$SWITCHYARD_ADMIN_ADDR" \
    --model "${mv%%:*}" --version "${mv##*:}" --concurrency 8 --seconds 4 --binary
done

echo "==> offline batch: 2,000 rows through mlp:v1 at full batch size ($DEMO/batch-in.jsonl -> $DEMO/batch-out.jsonl)"
"$PWD/.venv/bin/python" - "$DEMO/batch-in.jsonl" <<'PY'
import json, random, sys
random.seed(42)
with open(sys.argv[1], "w") as f:
    for _ in range(2000):
        f.write(json.dumps([round(random.gauss(0, 1), 4) for _ in range(64)]) + "\n")
PY
"$BIN/switchyard-backend" batch --model-repository models/repo --model mlp --version v1 \
  --input "$DEMO/batch-in.jsonl" --output "$DEMO/batch-out.jsonl" --restart
echo "    first result: $(head -n 1 "$DEMO/batch-out.jsonl" | cut -c 1-160)"

echo "==> metrics: http://$SWITCHYARD_ADMIN_ADDR/metrics   (documented in docs/metrics.md); a few of them:"
curl -fsS "http://$SWITCHYARD_ADMIN_ADDR/metrics" \
  | grep -E '^switchyard_(inference_requests_total|batch_size_(sum|count)|device_seconds_total|model_ready)' | sed 's/^/    /'

if [ "$STAY" = 1 ]; then
  echo "==> the backend stays up: http://$SWITCHYARD_HTTP_ADDR (Open Inference Protocol). Ctrl-C stops it."
  wait "$PID" || true
fi
