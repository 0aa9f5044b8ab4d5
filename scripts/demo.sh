#!/usr/bin/env bash
# The local demo stack, from a fresh clone: installs what is missing, builds, generates the
# demo models, and runs the data plane on loopback:
#   client -> Envoy :10000 (Switchyard filter: split, shadow, sampling, SLOs)
#          -> backend v1 :8101 (mlp:v1, resnet18:v1) | backend v2 :8102 (mlp:v2, resnet18:v2)
#   samples -> collector :9411 -> .demo/samples.jsonl -> drift monitor :9412 (switchyard-monitor watch)
#   Prometheus :9090 (scrapes Envoy and the backends; SLO, canary, cost rules) -> Alertmanager :9093
#   the rollout controller :9950 (switchyard-rollout run): the rollout console and its API
# then drives traffic, changes the canary weight at run time, crashes the canary (the filter's
# guard takes it out), restarts it and promotes it with switchyard-rollout, runs an offline
# batch job, drives input drift (the monitor flags the shifted features, the drift alert fires),
# prints what came back and where the metrics are, and stops everything cleanly.
#   scripts/demo.sh           run and stop
#   scripts/demo.sh --quick   the same steps with shorter traffic phases (what CI runs)
#   scripts/demo.sh --stay    leave the stack running until Ctrl-C
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STAY=0 QUICK=0
for arg in "$@"; do
  case "$arg" in
    --stay) STAY=1 ;;
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
# Traffic phases in seconds: ramp, resnet18 clients, after the canary change. --quick keeps
# every step and shortens only these.
if [ "$QUICK" = 1 ]; then T_RAMP=2 T_RESNET=2 T_CANARY=2 T_GUARD=3 T_STEP=1 T_DRIFT=8; else T_RAMP=5 T_RESNET=4 T_CANARY=4 T_GUARD=5 T_STEP=3 T_DRIFT=20; fi
DEMO=.demo
ENVOY=127.0.0.1:10000
ENVOY_ADMIN=127.0.0.1:9901
PROM=127.0.0.1:9090 ALERTMANAGER=127.0.0.1:9093 WEBHOOK=127.0.0.1:9095
export SWITCHYARD_STATE=$DEMO/envoy SWITCHYARD_ENVOY_LISTEN=$ENVOY SWITCHYARD_ENVOY_ADMIN=$ENVOY_ADMIN
export SWITCHYARD_BACKEND_V1=127.0.0.1:8101 SWITCHYARD_BACKEND_V2=127.0.0.1:8102 SWITCHYARD_COLLECTOR=127.0.0.1:9411
export SWITCHYARD_BACKEND_V1_GRPC=127.0.0.1:8111 SWITCHYARD_BACKEND_V2_GRPC=127.0.0.1:8112
MONITOR_ADDR=127.0.0.1:9412
CONSOLE=127.0.0.1:9950
PORTS=("backend v1=8101" "backend v1 gRPC=8111" "backend v1 admin=8201" "backend v2=8102" "backend v2 gRPC=8112"
  "backend v2 admin=8202" "collector=9411"
  "drift monitor=9412" "rollout console=9950" "Envoy=10000" "Envoy admin=9901" "Prometheus=9090" "Alertmanager=9093" "alert webhook=9095")

step "checking that the demo's ports are free"
sy_ports_free "${PORTS[@]}"

step "set-up (scripts/setup.sh)"
scripts/setup.sh
T_SETUP=$SECONDS

step "building (release; the first build compiles the libtorch bindings and takes a few minutes)"
sy_build_release
sy_filter >/dev/null
CONSOLE_DIR=$(sy_console)
LOAD=$(sy_bin switchyard-load)
BACKEND=$(sy_bin switchyard-backend)
COLLECTOR=$(sy_bin switchyard-collector)
MONITOR=$(sy_bin switchyard-monitor)
POLICY_BIN=$(sy_bin switchyard-policy)
ROLLOUT_BIN=$(sy_bin switchyard-rollout)
T_BUILD=$SECONDS

NAMES=() PIDS=()
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
start() { # name, command...: runs in the background, output in $DEMO/<name>.{out,log}
  local name=$1
  shift
  "$@" >"$DEMO/$name.out" 2>"$DEMO/$name.log" &
  NAMES+=("$name") PIDS+=($!)
}
# A component that is gone: name it, its exit status and the end of its log, then fail.
check_alive() {
  local i rc
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      rc=0
      wait "${PIDS[$i]}" || rc=$?
      echo "$SY_SCRIPT: ${NAMES[$i]} exited with status $rc during start-up; the end of $DEMO/${NAMES[$i]}.log:" >&2
      tail -n 15 "$DEMO/${NAMES[$i]}.log" | sed 's/^/    /' >&2
      unset "PIDS[$i]"
      exit 1
    fi
  done
}
wait_http() { # url, what
  local _
  for _ in $(seq 1 600); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    check_alive
    sleep 0.2
  done
  die "$2 not ready at $1 after 120 s; logs in $DEMO/"
}

step "checking the ports again (set-up and build took $(sy_elapsed $((T_BUILD))))"
sy_ports_free "${PORTS[@]}"
rm -rf "$DEMO"
mkdir -p "$DEMO"

step "starting backends, collector, drift monitor and Envoy (logs in $DEMO/)"
start backend-v1 "$BACKEND" serve --model-repository models/repo --models mlp:v1,resnet18:v1 \
  --http-addr "$SWITCHYARD_BACKEND_V1" --grpc-addr "$SWITCHYARD_BACKEND_V1_GRPC" --admin-addr 127.0.0.1:8201
start backend-v2 "$BACKEND" serve --model-repository models/repo --models mlp:v2,resnet18:v2 \
  --http-addr "$SWITCHYARD_BACKEND_V2" --grpc-addr "$SWITCHYARD_BACKEND_V2_GRPC" --admin-addr 127.0.0.1:8202
start collector "$COLLECTOR" --listen "$SWITCHYARD_COLLECTOR" --output "$DEMO/samples.jsonl"
start monitor "$MONITOR" watch --listen "$MONITOR_ADDR" --samples "$DEMO/samples.jsonl" \
  --config monitor/configs/demo.json --state "$DEMO/monitor-state"
start envoy envoy/run.sh
wait_http "http://$SWITCHYARD_BACKEND_V1/v2/health/ready" "backend v1"
wait_http "http://$SWITCHYARD_BACKEND_V2/v2/health/ready" "backend v2"
wait_http "http://$ENVOY/v2/health/live" "Envoy"
wait_http "http://$MONITOR_ADDR/health" "drift monitor"

step "starting Prometheus :9090 (SLO, canary and cost rules) and Alertmanager :9093 (webhook receiver :9095)"
"$POLICY_BIN" render alertmanager --out "$DEMO/alertmanager/alertmanager.yml" --webhook "http://$WEBHOOK" \
  --group-wait 5s >/dev/null
# The checked-in rules, with the drift alerts' time constants cut from 30 min (a column drifted
# at every evaluation) and 10 min (dataset drift) to 20 s, so the drift alert can fire within
# the demo; nothing else changes.
mkdir -p "$DEMO/rules"
cp dashboards/prometheus/recording-rules.yml dashboards/prometheus/alerting-rules.yml "$DEMO/rules/"
"$SY_PY" - "$DEMO/rules" <<'PY'
import pathlib, sys
for name in ("recording-rules.yml", "alerting-rules.yml"):
    path = pathlib.Path(sys.argv[1]) / name
    text = path.read_text()
    start = text.index("  - name: switchyard-drift")
    end = text.find("\n  - name:", start + 1)
    end = len(text) if end < 0 else end
    block = text[start:end].replace("[30m]", "[20s]").replace("offset 30m", "offset 20s").replace("for: 10m", "for: 20s")
    path.write_text(text[:start] + block + text[end:])
PY
"$POLICY_BIN" render prometheus --out-dir "$DEMO/prometheus" --rules-dir "$DEMO/rules" --policy envoy/policy.json --envoy "$ENVOY_ADMIN" \
  --backend 127.0.0.1:8201 --backend 127.0.0.1:8202 --monitor "$MONITOR_ADDR" --alertmanager "$ALERTMANAGER" >/dev/null
start webhook "$SY_PY" dashboards/webhook.py --listen "$WEBHOOK" --out "$DEMO/alerts.jsonl"
start alertmanager prometheus-alertmanager --config.file="$DEMO/alertmanager/alertmanager.yml" \
  --storage.path="$DEMO/alertmanager/data" --web.listen-address="$ALERTMANAGER" --cluster.listen-address=
start prometheus prometheus --config.file="$DEMO/prometheus/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus/data" \
  --web.listen-address="$PROM"
wait_http "http://$ALERTMANAGER/-/ready" "Alertmanager"
wait_http "http://$PROM/-/ready" "Prometheus"
echo "    policy (envoy/policy.json): mlp v1 90% / v2 10%, sticky on x-user-id, 5% shadowed to v2; resnet18 all v1; 1% of payloads sampled"
T_UP=$SECONDS

envoy_stats() {
  curl -fsS "http://$ENVOY_ADMIN/stats/prometheus"
}
metric() { # prometheus text on stdin; prints matching lines without the metric's noise
  grep -E "$1" | grep -vE ' 0$' | sed 's/^/    /' || true
}

step "real-time traffic through Envoy: mlp ramping 50 -> 800 req/s over ${T_RAMP} s (open loop), 8 clients on resnet18 for ${T_RESNET} s"
"$LOAD" open --addr "$ENVOY" --model mlp --rate 50 --ramp-to 800 --duration "${T_RAMP}s" --plot "$DEMO/load"
"$LOAD" closed --addr "$ENVOY" --model resnet18 --concurrency 8 --duration "${T_RESNET}s" --binary
echo "    where the requests went, by the filter's own count:"
envoy_stats | metric '^switchyard_requests_total\{model="(mlp|resnet18)".*outcome="success"'
echo "    batch sizes the backends formed (mean rows per batch):"
for port in 8201 8202; do
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v p="$port" '/^switchyard_batch_size_(sum|count)/ {split($1,a,"{"); k=a[2]; v[a[1]" "k]=$2} END {for (x in v) if (x ~ /_sum/) {c=x; sub(/_sum/,"_count",c); if (v[c]>0) {l=substr(x, index(x," ")+1); gsub(/model="|",version="/, " ", l); gsub(/"}/, "", l); printf "    backend :%s %s mean %.1f rows\n", p, l, v[x]/v[c]}}}'
done

step "sticky users: each user keeps their version"
for u in alice bob carol dave; do
  versions=$(for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -D - -H "x-user-id: $u" "http://$ENVOY/v2/models/mlp" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-switchyard-version" {print $2}'; done | sort | uniq -c | tr -s ' ')
  echo "    $u:$versions"
done

step "gRPC on the same listener, routed by the same policy: switchyard-load --grpc on resnet18 (4 clients, ${T_RESNET} s), then NVIDIA's tritonclient[grpc]"
resnet_ok() {
  envoy_stats | awk '/^switchyard_requests_total\{model="resnet18",.*outcome="success"/ {n += $2} END {print n + 0}'
}
before=$(resnet_ok)
"$LOAD" closed --addr "$ENVOY" --model resnet18 --grpc --concurrency 4 --duration "${T_RESNET}s" -q | grep -E '^(run|main)' | sed 's/^/    /'
sleep 1 # the filter flushes its counters every second
echo "    the filter accounted $(($(resnet_ok) - before)) successful gRPC calls to resnet18 (switchyard_requests_total)"
"$SY_PY" - "$ENVOY" <<'PY'
import sys
import numpy as np
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException
c = g.InferenceServerClient(sys.argv[1])
x = g.InferInput("features", [1, 64], "FP32")
x.set_data_from_numpy(np.zeros((1, 64), np.float32))
r = c.infer("mlp", [x], model_version="v2")
print(f"    tritonclient[grpc] asked for mlp v2 (the policy allows it): answered by {r.get_response().model_version}")
try:
    c.infer("no-such-model", [x])
except InferenceServerException as e:
    print(f"    a model the policy does not name: {e.status()} from the filter ({e.message()})")
PY

step "canary to 50% at run time (ECDS; no restart, nothing dropped)"
"$POLICY_BIN" weights envoy/policy.json --model mlp v1=50 v2=50 --out "$DEMO/policy-50.json" >/dev/null
envoy/apply-policy.sh "$DEMO/policy-50.json" | sed 's/^/    /'
v2_served() {
  envoy_stats | awk '/^switchyard_requests_total\{model="mlp",version="v2",outcome="success"/ {n += $2} END {print n + 0}'
}
before=$(v2_served)
"$LOAD" open --addr "$ENVOY" --model mlp --rate 500 --duration "${T_CANARY}s" -q
after=$(v2_served)
echo "    v2 served $((after - before)) of those $((500 * T_CANARY)) requests"

step "a canary that crashes: backend v2 SIGKILLed under 300 req/s; the filter's guard takes mlp/v2 out on its own"
"$LOAD" open --addr "$ENVOY" --model mlp --rate 300 --duration "${T_GUARD}s" -q --report "$DEMO/guard.json" &
load_pid=$!
sleep 1
kill -KILL "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null || true
unset 'PIDS[1]' 'NAMES[1]'
wait "$load_pid"
"$SY_PY" - "$DEMO/guard.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["total"]
last = t.get("last_error_ms")
print(f"    {t['errors']} of {t['sent']} requests failed ({100 * t['errors'] / t['sent']:.2f}%);"
      + (f" the last error ended {last - 1000:.0f} ms after the crash" if last else " none"))
PY
grep -h "guard took" "$DEMO/envoy.log" | head -n 1 | sed 's/.*switchyard: switchyard: /    Envoy log: /' || true
envoy_stats | metric '^switchyard_guard_out\{model="mlp"'

step "the fixed canary back: backend v2 restarted, the guard reset, and switchyard-rollout promoting mlp:v2 step by step"
start backend-v2b "$BACKEND" serve --model-repository models/repo --models mlp:v2,resnet18:v2 \
  --http-addr "$SWITCHYARD_BACKEND_V2" --grpc-addr "$SWITCHYARD_BACKEND_V2_GRPC" --admin-addr 127.0.0.1:8202
wait_http "http://$SWITCHYARD_BACKEND_V2/v2/health/ready" "backend v2 (restarted)"
cp "$DEMO/policy-50.json" "$DEMO/policy-rollout.json"
cat > "$DEMO/rollout.yaml" <<EOT
model: mlp
canary: v2
steps:
  - {weight: 70, min_duration: ${T_STEP}s, min_requests: 50}
  - {weight: 90, min_duration: ${T_STEP}s, min_requests: 50}
EOT
ROLLOUT=("$ROLLOUT_BIN" --state-dir "$DEMO/rollout")
"${ROLLOUT[@]}" start "$DEMO/rollout.yaml" --policy "$DEMO/policy-rollout.json" --bootstrap "$DEMO/envoy/envoy.yaml" \
  --envoy-admin "$ENVOY_ADMIN" | sed 's/^/    /'
"${ROLLOUT[@]}" reset-guard | sed 's/^/    /'
"$LOAD" open --addr "$ENVOY" --model mlp --rate 300 --duration "$((3 * T_STEP + 4))s" -q >/dev/null &
load_pid=$!
# The controller stays up after the rollout: it serves the console for the rest of the demo.
start rollout-controller "${ROLLOUT[@]}" run --interval 500ms --keep-running --admin-addr "$CONSOLE" \
  --console-dir "$CONSOLE_DIR" --policy "$DEMO/policy-rollout.json" --bootstrap "$DEMO/envoy/envoy.yaml" \
  --envoy-admin "$ENVOY_ADMIN" --collector "$SWITCHYARD_COLLECTOR" --monitor "$MONITOR_ADDR" --samples "$DEMO/samples.jsonl"
wait_http "http://$CONSOLE/api/state" "the rollout console"
for _ in $(seq 1 $((20 * (3 * T_STEP + 30)))); do
  state=$("${ROLLOUT[@]}" status --json || true)
  grep -q '"state": "\(running\|paused\|holding\)"' <<<"$state" || break
  check_alive
  sleep 0.05
done
wait "$load_pid"
grep -v '^switchyard-rollout: ' "$DEMO/rollout-controller.out" | sed 's/^/    /'
"${ROLLOUT[@]}" status | sed 's/^/    /'
echo "    the console: http://$CONSOLE/ (writes need the token in $DEMO/rollout/admin-token)"
echo "    events: $DEMO/rollout/events.jsonl ($(wc -l < "$DEMO/rollout/events.jsonl") lines)"

step "input drift (load-tests/scenarios/drift.toml): every mlp request sampled; after ${T_DRIFT} s features 0-7 shift"
echo "    the drift monitor (monitor/configs/demo.json) compares mlp:v2's last 2,000 rows with its first 3,000"
"$SY_PY" - "$DEMO/policy-rollout.json" "$DEMO/policy-drift.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["models"]["mlp"]["sampling"]["rate"] = 1.0
json.dump(p, open(sys.argv[2], "w"), indent=2)
PY
envoy/apply-policy.sh "$DEMO/policy-drift.json" | sed 's/^/    /'
sed -E "s/^duration = \"20s\"/duration = \"${T_DRIFT}s\"/" load-tests/scenarios/drift.toml > "$DEMO/drift.toml"
"$LOAD" run "$DEMO/drift.toml" --addr "$ENVOY" -q | sed 's/^/    /'
"$SY_PY" - "http://$MONITOR_ADDR" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
def get(path):
    return urllib.request.urlopen(base + path, timeout=5).read().decode()
def ingested():
    for line in get("/metrics").splitlines():
        if line.startswith('switchyard_drift_rows_ingested_total{') and 'model="mlp"' in line and 'version="v2"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0
# The collector ships within ~100 ms and the monitor evaluates every 2 s: wait for a window
# evaluation that covers every row ingested.
deadline, w = time.time() + 30, {}
while time.time() < deadline:
    w = json.loads(get("/v1/drift")).get("mlp", {}).get("versions", {}).get("v2", {}).get("2k", {})
    if w and w["rows_ingested"] == ingested() and w["rows"] == 2000:
        break
    time.sleep(0.5)
if not w:
    sys.exit("    the drift monitor has evaluated nothing: see .demo/monitor.log")
drifted = [c for c in w["columns"] if c.get("drifted")]
print(f"    window 2k of mlp:v2: {len(drifted)} of {len(w['columns'])} columns drifted (dataset drift: {w['dataset']['drifted']}):")
for c in drifted:
    print(f"      {c['column']:<20} {c['test']:<13} score {c['score']:.4f} >= threshold {c['threshold']}")
quiet = [c for c in w["columns"] if not c.get("drifted") and c["column"].startswith("features[")]
worst = max(quiet, key=lambda c: c["score"]) if quiet else None
if worst:
    print(f"    the {len(quiet)} unshifted features stay below it (highest: {worst['column']} {worst['score']:.4f})")
PY

step "offline batch: 2,000 rows through mlp:v1 at full batch size ($DEMO/batch-in.jsonl -> $DEMO/batch-out.jsonl)"
"$SY_PY" - "$DEMO/batch-in.jsonl" <<'PY'
import json, random, sys
random.seed(42)
with open(sys.argv[1], "w") as f:
    for _ in range(2000):
        f.write(json.dumps([round(random.gauss(0, 1), 4) for _ in range(64)]) + "\n")
PY
"$BACKEND" batch --model-repository models/repo --model mlp --version v1 \
  --input "$DEMO/batch-in.jsonl" --output "$DEMO/batch-out.jsonl" --restart
echo "    first result: $(head -n 1 "$DEMO/batch-out.jsonl" | cut -c 1-160)"

sleep 2 # one SLO merge and stats flush
step "SLOs per version (filter, shared across Envoy workers): burn rate x1000 over the 5m window"
envoy_stats | grep -E '^switchyard_slo_burn_rate_x1000\{.*window="5m"' | sed 's/^/    /'
echo "==> payload samples shipped to the collector: $(wc -l < "$DEMO/samples.jsonl") in $DEMO/samples.jsonl"
step "shadow answers compared (docs/shadow-compare.md): mlp:v2's answers against v1's, judged by the collector"
curl -fsS "http://$SWITCHYARD_COLLECTOR/metrics" > "$DEMO/collector-metrics.txt"
"$SY_PY" - "$DEMO/collector-metrics.txt" <<'PY'
import sys
rows, bad = {}, {}
for line in open(sys.argv[1]):
    for name, into in (("switchyard_shadow_compared_rows_total{", rows), ("switchyard_shadow_disagreeing_rows_total{", bad)):
        if line.startswith(name):
            labels, value = line[len(name):].rsplit("} ", 1)
            pair = dict(kv.split("=", 1) for kv in labels.split(","))["pair"].strip('"')
            into[pair] = into.get(pair, 0) + float(value)
def share(pair):
    return bad.get(pair, 0) / rows[pair] if rows.get(pair) else 0.0
if not rows.get("shadow"):
    print("    no comparison yet (5% of the requests v1 serves are shadowed, half of those compared)")
else:
    print(f"    v2 disagrees with v1 on {100 * share('shadow'):.1f}% of {rows['shadow']:.0f} compared rows;"
          f" v1 with itself (the noise) on {100 * share('noise'):.1f}% of {rows.get('noise', 0):.0f}")
    print("    (v2 is a wider network from another seed: its answers really differ; a rollout's shadow step")
    print("    with max_disagreement would hold it back)")
PY

prom_query() { # PromQL -> one line per series: labels = value
  curl -fsS "http://$PROM/api/v1/query" --data-urlencode "query=$1" | "$SY_PY" -c 'import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    labels = " ".join(f"{k}={v}" for k, v in sorted(r["metric"].items()) if k != "__name__")
    print("    " + labels, "=", "%.6g" % float(r["value"][1]))'
}
sleep 6 # one more scrape and rule evaluation (every 5 s)
step "Prometheus (http://$PROM): availability SLI error ratio over 5m, and cost per 1,000 inferences (USD, dashboards/prices.json)"
prom_query 'slo:sli_error:ratio_rate5m{sli="availability"} >= 0' # NaN (no traffic in the window) left out
prom_query 'model_version:switchyard_cost_per_1k_inferences_dollars:rate5m'
step "the drift alert (Prometheus scrapes the monitor; the rules above, time constants cut to 20 s)"
"$SY_PY" - "http://$PROM" "$DEMO/alerts.jsonl" <<'PY'
import json, sys, time, urllib.request
prom, notified = sys.argv[1], sys.argv[2]
def firing():
    # /api/v1/alerts carries each alert's value (ALERTS{} is always 1).
    alerts = json.load(urllib.request.urlopen(f"{prom}/api/v1/alerts", timeout=5))["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"
            and a["labels"]["alertname"] in ("SwitchyardColumnDrift", "SwitchyardDatasetDrift")]
def delivered():
    try:
        lines = open(notified).read().splitlines()
    except FileNotFoundError:
        return []
    return [a for l in lines for a in json.loads(l)["notification"]["alerts"]
            if a["labels"]["alertname"].endswith("Drift") and a["status"] == "firing"]
deadline, t0 = time.time() + 90, time.time()
while time.time() < deadline and not (firing() and delivered()):
    time.sleep(1)
if firing():
    # Columns cross into drift one after another: two more rule evaluations let the count settle.
    time.sleep(12)
alerts = firing()
if not alerts:
    sys.exit("    no drift alert fired within 90 s: see http://127.0.0.1:9090/alerts and .demo/monitor.log")
for a in alerts:
    m = a["labels"]
    v = float(a["value"])
    what = (f"{v:.0f} column(s) drifted at every evaluation of the last 20 s" if m["alertname"] == "SwitchyardColumnDrift"
            else f"{v:.0%} of the columns drifted")
    print(f"    {m['alertname']} firing: {m['model']}/{m['version']} window {m['window']}: {what}")
sent = delivered()
print(f"    Alertmanager delivered {len(sent)} to the webhook ({notified}, receiver 'ticket')" if sent
      else "    (not yet delivered by Alertmanager)")
print(f"    {time.time() - t0:.0f} s after the drift read-out; runbook: docs/runbooks/{alerts[0]['labels']['alertname']}.md")
PY
step "the rollout console (http://$CONSOLE/), as Debian's chromium draws it: $DEMO/console.png"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1500,2000 --virtual-time-budget=5000 \
  --screenshot="$DEMO/console.png" "http://$CONSOLE/" >"$DEMO/chromium.log" 2>&1 ||
  echo "    (no screenshot: chromium failed, see $DEMO/chromium.log)"
[ -s "$DEMO/console.png" ] && echo "    $DEMO/console.png ($(( $(stat -c %s "$DEMO/console.png") / 1024 )) KiB)"
steps_done

cat <<EOT
==> where to look
    inference (through Envoy):  http://$ENVOY/v2/models/mlp/infer   gRPC: $ENVOY (inference.GRPCInferenceService)
    Envoy + filter metrics:     http://$ENVOY_ADMIN/stats/prometheus   (switchyard_* documented in docs/metrics.md)
    backend metrics:            http://127.0.0.1:8201/metrics  http://127.0.0.1:8202/metrics
    rollout console:            http://$CONSOLE/   (writes need the token in $DEMO/rollout/admin-token; $DEMO/console.png)
    change weights/sampling:    envoy/apply-policy.sh <policy.json>
    Prometheus (SLOs, cost, alerts): http://$PROM   e.g. slo:current_burn_rate:ratio
    Alertmanager:               http://$ALERTMANAGER   (notifications in $DEMO/alerts.jsonl)
    Grafana dashboards:         dashboards/grafana/*.json (import; choose this Prometheus as data source)
    load scenarios:             ${LOAD#"$SY_ROOT"/} run load-tests/scenarios/<name>.toml
EOT

if [ "$STAY" = 1 ]; then
  echo "==> the stack stays up; Ctrl-C stops it."
  wait "${PIDS[0]}" || true
fi
stop
echo "==> demo done in $(sy_elapsed "$SECONDS"): set-up $(sy_elapsed "$T_SETUP"), build $(sy_elapsed $((T_BUILD - T_SETUP))), start-up $(sy_elapsed $((T_UP - T_BUILD))), traffic and read-outs $(sy_elapsed $((SECONDS - T_UP)))"
