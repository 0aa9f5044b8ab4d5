#!/usr/bin/env bash
# The local demo stack, from a fresh clone: installs what is missing, builds, generates the
# demo models, and runs the data plane on loopback:
#   client -> Envoy :10000 (Switchyard filter: split, shadow, sampling, SLOs)
#          -> backend v1 :8101 (mlp:v1, resnet18:v1) | backend v2 :8102 (mlp:v2, resnet18:v2)
#   samples -> collector :9411 -> .demo/samples.jsonl
#   Prometheus :9090 (scrapes Envoy and the backends; SLO, canary, cost rules) -> Alertmanager :9093
# then drives traffic, changes the canary weight at run time, runs an offline batch job,
# prints what came back and where the metrics are, and stops everything cleanly.
#   scripts/demo.sh          run and stop
#   scripts/demo.sh --stay   leave the stack running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
STAY=0
for arg in "$@"; do
  case "$arg" in
    --stay) STAY=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
DEMO=.demo
mkdir -p "$DEMO"
ENVOY=127.0.0.1:10000
ENVOY_ADMIN=127.0.0.1:9901
export SWITCHYARD_STATE=$DEMO/envoy SWITCHYARD_ENVOY_LISTEN=$ENVOY SWITCHYARD_ENVOY_ADMIN=$ENVOY_ADMIN
export SWITCHYARD_BACKEND_V1=127.0.0.1:8101 SWITCHYARD_BACKEND_V2=127.0.0.1:8102 SWITCHYARD_COLLECTOR=127.0.0.1:9411

scripts/setup.sh

echo "==> building (release; the first build compiles libtorch bindings and takes a few minutes)"
cargo build --release --quiet
scripts/build-filter.sh
BIN=target/release
PY=.venv/bin/python

PIDS=()
stop() {
  trap - EXIT
  [ ${#PIDS[@]} -gt 0 ] || return 0
  echo "==> stopping (SIGTERM: backends drain queued work, then exit)"
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "    stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM
start() { # name, command...
  local name=$1; shift
  "$@" >"$DEMO/$name.out" 2>"$DEMO/$name.log" &
  PIDS+=($!)
}
wait_http() { # url, what
  for _ in $(seq 1 600); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a component exited during start-up; logs in $DEMO/" >&2; tail -5 "$DEMO"/*.log >&2; exit 1; }; done
    sleep 0.2
  done
  echo "$2 not ready after 120 s; logs in $DEMO/" >&2; exit 1
}

echo "==> starting backends, collector and Envoy (logs in $DEMO/)"
start backend-v1 "$BIN/switchyard-backend" serve --model-repository models/repo --models mlp:v1,resnet18:v1 \
  --http-addr "$SWITCHYARD_BACKEND_V1" --admin-addr 127.0.0.1:8201
start backend-v2 "$BIN/switchyard-backend" serve --model-repository models/repo --models mlp:v2,resnet18:v2 \
  --http-addr "$SWITCHYARD_BACKEND_V2" --admin-addr 127.0.0.1:8202
start collector "$BIN/switchyard-collector" --listen "$SWITCHYARD_COLLECTOR" --output "$DEMO/samples.jsonl"
start envoy envoy/run.sh
wait_http "http://$SWITCHYARD_BACKEND_V1/v2/health/ready" "backend v1"
wait_http "http://$SWITCHYARD_BACKEND_V2/v2/health/ready" "backend v2"
wait_http "http://$ENVOY/v2/health/live" "Envoy"
PROM=127.0.0.1:9090 ALERTMANAGER=127.0.0.1:9093 WEBHOOK=127.0.0.1:9095
echo "==> starting Prometheus :9090 (SLO, canary and cost rules) and Alertmanager :9093 (webhook receiver :9095)"
rm -rf "$DEMO/prometheus" "$DEMO/alertmanager"
"$PY" dashboards/render.py alertmanager --out "$DEMO/alertmanager/alertmanager.yml" --webhook "http://$WEBHOOK" >/dev/null
"$PY" dashboards/render.py prometheus --out-dir "$DEMO/prometheus" --policy envoy/policy.json --envoy "$ENVOY_ADMIN" \
  --backend 127.0.0.1:8201 --backend 127.0.0.1:8202 --alertmanager "$ALERTMANAGER" >/dev/null
start webhook "$PY" dashboards/webhook.py --listen "$WEBHOOK" --out "$DEMO/alerts.jsonl"
start alertmanager prometheus-alertmanager --config.file="$DEMO/alertmanager/alertmanager.yml" \
  --storage.path="$DEMO/alertmanager/data" --web.listen-address="$ALERTMANAGER" --cluster.listen-address=
start prometheus prometheus --config.file="$DEMO/prometheus/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus/data" \
  --web.listen-address="$PROM"
wait_http "http://$ALERTMANAGER/-/ready" "Alertmanager"
wait_http "http://$PROM/-/ready" "Prometheus"
echo "    policy (envoy/policy.json): mlp v1 90% / v2 10%, sticky on x-user-id, 5% shadowed to v2; resnet18 all v1; 1% of payloads sampled"

metric() { # prometheus text on stdin; prints matching lines without the metric's noise
  grep -E "$1" | grep -vE ' 0$' | sed 's/^/    /' || true
}

echo "==> real-time traffic through Envoy: mlp ramping 50 -> 800 req/s over 5 s (open loop), 8 clients on resnet18 for 4 s"
"$BIN/switchyard-load" open --addr "$ENVOY" --model mlp --rate 50 --ramp-to 800 --duration 5s --plot "$DEMO/load"
"$BIN/switchyard-load" closed --addr "$ENVOY" --model resnet18 --concurrency 8 --duration 4s --binary
echo "    where the requests went, by the filter's own count:"
curl -fsS "http://$ENVOY_ADMIN/stats/prometheus" | metric '^switchyard_requests_total\{model="(mlp|resnet18)".*outcome="success"'
echo "    batch sizes the backends formed (mean rows per batch):"
for port in 8201 8202; do
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v p="$port" '/^switchyard_batch_size_(sum|count)/ {split($1,a,"{"); k=a[2]; v[a[1]" "k]=$2} END {for (x in v) if (x ~ /_sum/) {c=x; sub(/_sum/,"_count",c); if (v[c]>0) {l=substr(x, index(x," ")+1); gsub(/model="|",version="/, " ", l); gsub(/"}/, "", l); printf "    backend :%s %s mean %.1f rows\n", p, l, v[x]/v[c]}}}'
done

echo "==> sticky users: each user keeps their version"
for u in alice bob carol dave; do
  versions=$(for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -D - -H "x-user-id: $u" "http://$ENVOY/v2/models/mlp" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-switchyard-version" {print $2}'; done | sort | uniq -c | tr -s ' ')
  echo "    $u:$versions"
done

echo "==> canary to 50% at run time (ECDS; no restart, nothing dropped)"
"$PY" - "$DEMO/policy-50.json" <<'PY'
import json, sys
p = json.load(open("envoy/policy.json"))
p["models"]["mlp"]["versions"][0]["weight"] = 50
p["models"]["mlp"]["versions"][1]["weight"] = 50
json.dump(p, open(sys.argv[1], "w"), indent=2)
PY
envoy/apply-policy.sh "$DEMO/policy-50.json" | sed 's/^/    /'
before=$(curl -fsS "http://$ENVOY_ADMIN/stats/prometheus" | awk '/^switchyard_requests_total\{model="mlp",version="v2",outcome="success"/ {print $2}')
"$BIN/switchyard-load" open --addr "$ENVOY" --model mlp --rate 500 --duration 4s -q
after=$(curl -fsS "http://$ENVOY_ADMIN/stats/prometheus" | awk '/^switchyard_requests_total\{model="mlp",version="v2",outcome="success"/ {print $2}')
echo "    v2 served $((after - before)) of those 2000 requests"

echo "==> offline batch: 2,000 rows through mlp:v1 at full batch size ($DEMO/batch-in.jsonl -> $DEMO/batch-out.jsonl)"
"$PY" - "$DEMO/batch-in.jsonl" <<'PY'
import json, random, sys
random.seed(42)
with open(sys.argv[1], "w") as f:
    for _ in range(2000):
        f.write(json.dumps([round(random.gauss(0, 1), 4) for _ in range(64)]) + "\n")
PY
"$BIN/switchyard-backend" batch --model-repository models/repo --model mlp --version v1 \
  --input "$DEMO/batch-in.jsonl" --output "$DEMO/batch-out.jsonl" --restart
echo "    first result: $(head -n 1 "$DEMO/batch-out.jsonl" | cut -c 1-160)"

sleep 2 # one SLO merge and stats flush
echo "==> SLOs per version (filter, shared across Envoy workers): burn rate x1000 over the 5m window"
curl -fsS "http://$ENVOY_ADMIN/stats/prometheus" | grep -E '^switchyard_slo_burn_rate_x1000\{.*window="5m"' | sed 's/^/    /'
echo "==> payload samples shipped to the collector: $(wc -l < "$DEMO/samples.jsonl") in $DEMO/samples.jsonl"
prom_query() { # PromQL -> one line per series: labels = value
  curl -fsS "http://$PROM/api/v1/query" --data-urlencode "query=$1" | "$PY" -c 'import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    labels = " ".join(f"{k}={v}" for k, v in sorted(r["metric"].items()) if k != "__name__")
    print("    " + labels, "=", "%.6g" % float(r["value"][1]))'
}
sleep 6 # one more scrape and rule evaluation (every 5 s)
echo "==> Prometheus (http://$PROM): availability SLI error ratio over 5m, and cost per 1,000 inferences (USD, dashboards/prices.json)"
prom_query 'slo:sli_error:ratio_rate5m{sli="availability"} >= 0' # NaN (no traffic in the window) left out
prom_query 'model_version:switchyard_cost_per_1k_inferences_dollars:rate5m'

cat <<EOF
==> where to look
    inference (through Envoy):  http://$ENVOY/v2/models/mlp/infer
    Envoy + filter metrics:     http://$ENVOY_ADMIN/stats/prometheus   (switchyard_* documented in docs/metrics.md)
    backend metrics:            http://127.0.0.1:8201/metrics  http://127.0.0.1:8202/metrics
    change weights/sampling:    envoy/apply-policy.sh <policy.json>
    Prometheus (SLOs, cost, alerts): http://$PROM   e.g. slo:current_burn_rate:ratio
    Alertmanager:               http://$ALERTMANAGER   (notifications in $DEMO/alerts.jsonl)
    Grafana dashboards:         dashboards/grafana/*.json (import; choose this Prometheus as data source)
    load scenarios:             target/release/switchyard-load run load-tests/scenarios/<name>.toml
EOF

if [ "$STAY" = 1 ]; then
  echo "==> the stack stays up; Ctrl-C stops it."
  wait "${PIDS[0]}" || true
fi
