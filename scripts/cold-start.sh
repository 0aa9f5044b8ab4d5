#!/usr/bin/env bash
# Cold start of the backend, per demo model version (every models/repo/MODEL/VERSION): starts a
# fresh `switchyard-backend serve --models MODEL:VERSION` N times (rounds interleaved across the
# versions) and measures, from the process's spawn, the first 200 from GET /v2/health/ready
# (polled every 10 ms) and the first successful inference (GET /v2/models/M/versions/V for the
# input, then one POST .../infer of zeros, 1 row); then stops it with SIGTERM. Writes its section
# of docs/benchmarks.md (<!-- BEGIN cold-start -->) and docs/bench/cold-start.json.
#   scripts/cold-start.sh [--runs 5] [--models mlp:v1,...] [--port-base 8601] [--reproduce CMD]
# Also run by `scripts/bench.sh cold-start`. SWITCHYARD_BACKEND_BIN=PATH uses that binary instead
# of building target/release/switchyard-backend through cargo.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=5 MODELS="" PORT_BASE=8601 REPRODUCE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --port-base) PORT_BASE=$2; shift 2 ;;
    --reproduce) REPRODUCE=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive whole number, not '$RUNS'"
if ! [[ "$PORT_BASE" =~ ^[1-9][0-9]*$ ]] || [ "$PORT_BASE" -gt 65500 ]; then
  die "--port-base wants a port number up to 65500, not '$PORT_BASE'"
fi
if [ -z "$REPRODUCE" ]; then
  REPRODUCE="scripts/cold-start.sh"
  [ "$RUNS" = 5 ] || REPRODUCE+=" --runs $RUNS"
  [ -z "$MODELS" ] || REPRODUCE+=" --models $MODELS"
fi
REPO=models/repo
HTTP_PORT=$PORT_BASE GRPC_PORT=$((PORT_BASE + 10)) ADMIN_PORT=$((PORT_BASE + 20))

sy_need_setup
if ! compgen -G "$REPO/*/*/model.pt" >/dev/null; then
  echo "==> no demo models under $REPO: running scripts/setup.sh"
  scripts/setup.sh
fi
if [ -z "$MODELS" ]; then
  # Every version of every demo model, in name order.
  MODELS=$(find "$REPO" -mindepth 3 -maxdepth 3 -name config.json | sort | awk -F/ '{print $(NF-2) ":" $(NF-1)}' | paste -sd, -)
fi
[ -n "$MODELS" ] || die "no model versions found under $REPO"

step "building (release)"
BACKEND=${SWITCHYARD_BACKEND_BIN:-$(sy_bin switchyard-backend)}
[ -x "$BACKEND" ] || die "no backend binary at $BACKEND"

step "checking the ports"
sy_ports_free "cold-start backend=$HTTP_PORT" "cold-start backend gRPC=$GRPC_PORT" "cold-start backend admin=$ADMIN_PORT"

step "cold starts: $MODELS, $RUNS runs each (interleaved)"
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
"$SY_PY" - "$BACKEND" "$REPO" "$MODELS" "$RUNS" "$HTTP_PORT" "$GRPC_PORT" "$ADMIN_PORT" "$LOGS" "$REPRODUCE" <<'PY'
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

backend, repo, models, runs, http_port, grpc_port, admin_port, logs, reproduce = sys.argv[1:]
versions = [tuple(mv.split(":", 1)) for mv in models.split(",")]
runs = int(runs)
base = f"http://127.0.0.1:{http_port}"
POLL_S = 0.010
GIVE_UP_S = 180.0
DOC = pathlib.Path("docs/benchmarks.md")
JSON_OUT = pathlib.Path("docs/bench/cold-start.json")


def fail(msg):
    print(f"cold-start.sh: {msg}", file=sys.stderr)
    sys.exit(1)


def machine():
    # As the benchmark suite names it (bench/src/common.rs: machine()).
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "unknown CPU")
    cores = sum(1 for l in cpuinfo.splitlines() if l.startswith("processor"))
    kb = float(pathlib.Path("/proc/meminfo").read_text().split()[1])
    return f"{cpu}, {cores} cores, {kb / 1024 / 1024:.0f} GiB"


def median(v):
    # The middle value (the upper one of an even count), as the benchmark suite takes it.
    v = sorted(v)
    return v[len(v) // 2]


def request(method, path, body=None, timeout=30.0):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def log_time(line):
    # tracing's lines start with an RFC 3339 UTC timestamp: 2026-12-03T12:47:36.462831Z
    try:
        stamp = line.split(" ", 1)[0].rstrip("Z")
        return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
    except (ValueError, IndexError):
        return None


def zeros(datatype, n):
    if datatype == "BOOL":
        return "[" + ",".join(["false"] * n) + "]"
    if datatype == "BYTES":
        fail("a BYTES input: this script sends numeric zeros only")
    return "[" + ",".join(["0"] * n) + "]"


def one_run(model, version, k):
    log_path = pathlib.Path(logs) / f"{model}-{version}-{k}.log"
    cmd = [backend, "serve", "--model-repository", repo, "--models", f"{model}:{version}",
           "--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}",
           "--admin-addr", f"127.0.0.1:{admin_port}"]
    with open(log_path, "wb") as log:
        wall0 = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def died(what):
        tail = "\n".join("    " + l for l in log_path.read_text(errors="replace").splitlines()[-15:])
        fail(f"{model}:{version} run {k + 1}: {what}; the end of its log:\n{tail}")

    try:
        polls = 0
        while True:
            if proc.poll() is not None:
                died(f"exited with status {proc.returncode} before it was ready")
            try:
                status, _ = request("GET", "/v2/health/ready", timeout=1.0)
                if status == 200:
                    t_ready = time.perf_counter()
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            polls += 1
            if time.perf_counter() - t0 > GIVE_UP_S:
                died(f"not ready after {GIVE_UP_S:.0f} s")
            # Poll on a 10 ms grid from the spawn (a slow poll does not shift the later ones).
            nxt = t0 + polls * POLL_S
            time.sleep(max(0.0, nxt - time.perf_counter()))
        try:
            _, meta = request("GET", f"/v2/models/{model}/versions/{version}")
            meta = json.loads(meta)
            inputs = []
            for spec in meta["inputs"]:
                shape = [1 if d < 0 else d for d in spec["shape"]]
                n = 1
                for d in shape:
                    n *= d
                inputs.append(f'{{"name":{json.dumps(spec["name"])},"shape":{json.dumps(shape)},'
                              f'"datatype":{json.dumps(spec["datatype"])},"data":{zeros(spec["datatype"], n)}}}')
            body = ('{"inputs":[' + ",".join(inputs) + "]}").encode()
            t_sent = time.perf_counter()
            status, out = request("POST", f"/v2/models/{model}/versions/{version}/infer", body)
            t_infer = time.perf_counter()
            outputs = json.loads(out).get("outputs")
            if status != 200 or not outputs:
                died(f"the first inference answered {status} without outputs")
        except urllib.error.HTTPError as e:
            died(f"the first inference failed: {e.code} {e.read()[:300]!r}")
        device = meta.get("parameters", {}).get("device", "?")
        t_term = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        t_exit = time.perf_counter()
        if rc != 0:
            died(f"exited with status {rc} after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Where the time went, from the backend's own log: its first line (after exec, the dynamic
    # loading of libtorch and its CUDA libraries, the CUDA probe) and the load + warm-up it reports.
    lines = log_path.read_text(errors="replace").splitlines()
    first = next((t for t in map(log_time, lines) if t is not None), None)
    load_s = None
    for l in lines:
        if "ready (warmed up)" in l and "seconds=" in l:
            load_s = float(l.split("seconds=", 1)[1].split()[0])
    ms = lambda s: round(s * 1000.0, 1)
    return {
        "ready_ms": ms(t_ready - t0),
        "first_infer_ms": ms(t_infer - t0),
        "infer_ms": ms(t_infer - t_sent),
        "to_first_log_line_ms": None if first is None else ms(first - wall0),
        "load_warmup_ms": None if load_s is None else ms(load_s),
        "sigterm_to_exit_ms": ms(t_exit - t_term),
        "device": device,
    }


def loadavg():
    return float(pathlib.Path("/proc/loadavg").read_text().split()[0])


load_before = loadavg()
results = {f"{m}:{v}": [] for m, v in versions}
for k in range(runs):
    for m, v in versions:
        r = one_run(m, v, k)
        results[f"{m}:{v}"].append(r)
        print(f"    round {k + 1}/{runs} {m}:{v}: ready {r['ready_ms']:.0f} ms, first inference {r['first_infer_ms']:.0f} ms "
              f"(log's first line at {r['to_first_log_line_ms']} ms, load + warm-up {r['load_warmup_ms']} ms)")
        time.sleep(0.5)

KEYS = ["ready_ms", "first_infer_ms", "infer_ms", "to_first_log_line_ms", "load_warmup_ms", "sigterm_to_exit_ms"]
summary = {}
for mv, rs in results.items():
    m, v = mv.split(":", 1)
    entry = {"model": m, "version": v, "device": rs[0]["device"], "runs": {key: [r[key] for r in rs] for key in KEYS}}
    for key in KEYS:
        vals = [x for x in entry["runs"][key] if x is not None]
        entry[key.removesuffix("_ms") + "_median_ms"] = median(vals) if vals else None
        entry[key.removesuffix("_ms") + "_max_ms"] = max(vals) if vals else None
    summary[mv] = entry
devices = sorted({e["device"] for e in summary.values()})
mach = machine()
load_after = loadavg()
doc = {
    "generated_by": reproduce,
    "machine": mach,
    "device": ",".join(devices),
    "model_repository": repo,
    "runs_per_version": runs,
    "load_average_1m": {"before": load_before, "after": load_after},
    "poll_interval_ms": POLL_S * 1000,
    "median": "the middle value of the runs (the upper one of an even count)",
    "fields": {
        "ready_ms": "spawn -> first 200 from GET /v2/health/ready",
        "first_infer_ms": "spawn -> first 200 from POST /v2/models/M/versions/V/infer (after the metadata GET)",
        "infer_ms": "that first inference's own request time",
        "to_first_log_line_ms": "spawn -> the timestamp of the backend's first log line",
        "load_warmup_ms": "the model's load and warm-up as the backend logs it",
        "sigterm_to_exit_ms": "SIGTERM -> process exit (idle: nothing to drain)",
    },
    "models": summary,
}
JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
JSON_OUT.write_text(json.dumps(doc, indent=2) + "\n")


def f0(x):
    return "–" if x is None else f"{x:.0f}"


md = []
md.append("# Benchmarks: cold start\n")
md.append(f"Generated by `{reproduce}` — do not edit by hand; re-run it.\n")
md.append(f"- Machine: {mach}; device: **{', '.join(devices)}**; load average {load_before:.2f} before the runs, {load_after:.2f} after. Each demo model version (`{repo}`) is served alone by a fresh "
          f"`switchyard-backend serve --models M:V`, {runs} time{'s' if runs != 1 else ''}, the rounds interleaved across the versions; each is stopped with "
          "SIGTERM before the next starts.")
md.append(f"- Ready: from the spawn to the first 200 from `GET /v2/health/ready`, polled every {POLL_S * 1000:.0f} ms (so up to "
          f"{POLL_S * 1000:.0f} ms late). The backend answers 200 only once the model is loaded and warmed up (a 1-row and a "
          "full batch of zeros). First inference: then `GET /v2/models/M/versions/V` for the inputs and one `POST …/infer` of "
          "zeros (1 row, JSON), from the spawn to its 200.")
md.append("- The files come from the page cache (the binary, libtorch and the model were read moments before): a pod on a fresh "
          "node reads them from its image first, and that is not in these figures. Machine-readable: `docs/bench/cold-start.json`.\n")
md.append("| model | ready median ms | ready max ms | first inference median ms | first inference max ms | runs: ready ms |")
md.append("|---|---:|---:|---:|---:|---|")
for mv, e in summary.items():
    md.append(f"| {mv} | {f0(e['ready_median_ms'])} | {f0(e['ready_max_ms'])} | {f0(e['first_infer_median_ms'])} | "
              f"{f0(e['first_infer_max_ms'])} | {', '.join(f0(x) for x in e['runs']['ready_ms'])} |")
md.append("\nWhere the time goes (medians): from the spawn to the backend's first log line (exec, the dynamic loading of libtorch "
          "and the CUDA libraries it links, the CUDA probe); the model's load and warm-up as the backend logs it; the first "
          "inference's own request; SIGTERM to exit (nothing queued to drain).\n")
md.append("| model | to first log line ms | load + warm-up ms | first inference request ms | SIGTERM → exit ms |")
md.append("|---|---:|---:|---:|---:|")
for mv, e in summary.items():
    md.append(f"| {mv} | {f0(e['to_first_log_line_median_ms'])} | {f0(e['load_warmup_median_ms'])} | "
              f"{e['infer_median_ms']:.1f} | {f0(e['sigterm_to_exit_median_ms'])} |")
content = "\n".join(md)

# The benchmark suite's write_section (bench/src/common.rs): replace between the markers, or append.
begin, end = "<!-- BEGIN cold-start -->", "<!-- END cold-start -->"
old = DOC.read_text() if DOC.exists() else ""
block = f"{begin}\n{content.rstrip()}\n{end}"
b, e = old.find(begin), old.find(end)
if b >= 0 and e > b:
    new = old[:b] + block + old[e + len(end):]
elif not old.strip():
    new = block + "\n"
else:
    new = old.rstrip() + "\n\n" + block + "\n"
DOC.write_text(new)
print(f"    written: {DOC} (section cold-start), {JSON_OUT}")
PY
steps_done
