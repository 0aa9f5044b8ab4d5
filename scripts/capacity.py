#!/usr/bin/env python3
"""Capacity on paper: writes docs/capacity.md and its charts docs/bench/capacity-{10,1000}x.svg.

    scripts/capacity.py            write them
    scripts/capacity.py --check    exit 1 (naming the files) when they differ from what it would write

Everything measured or configured is read from files (the saturation sweep in docs/benchmarks.md,
docs/bench/cold-start.json, dashboards/prices.json, the KEDA ScaledObjects, envoy/policy.json,
the demo's traffic in scripts/demo.sh and the protocols benchmark); what is assumed is in
ASSUMED below and printed in the document. Python 3 standard library only; deterministic output.
"""

import argparse
import bisect
import glob
import json
import math
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = "docs/benchmarks.md"
COLD_START = "docs/bench/cold-start.json"
PRICES = "dashboards/prices.json"
KEDA_GLOB = "k8s/components/keda/generated/*-scaledobject.yaml"
PODS_GLOB = "k8s/components/kserve/generated/*-inferenceservice.yaml"
POLICY = "envoy/policy.json"
DEMO = "scripts/demo.sh"
OUT_MD = "docs/capacity.md"
OUT_SVG = "docs/bench/capacity-{scale}x.svg"

# What is assumed, not measured or configured (each is stated in the document).
ASSUMED = {
    "p99_budget_share": 0.5,  # the backend's p99 target: this share of the policy's SLO latency
    "late_limit_pct": 1.0,  # a sweep step with more requests sent late than this was machine-limited
    "keep_up_fraction": 0.98,  # a step "kept up" when it achieved this share of its target rate
    "headroom": 1.25,  # plan each replica at measured rate / headroom
    "trough_fraction": 0.10,  # traffic at the trough, as a share of the peak
    "trough_hour": 4.0,
    "peak_hour": 14.0,
    "scales": (10, 1000),  # times the demo's peak load
    "scheduling_allowance_s": 10.0,  # pod scheduled and started on a node with room, image cached
    "slow_allowance_s": 180.0,  # the sensitivity case: a new node and an image pull
    # Kubernetes HPA defaults (KEDA drives an HPA; the generated ScaledObjects set no `advanced`):
    "hpa_tolerance": 0.1,
    "hpa_scale_down_window_s": 300,
    "hpa_scale_up_pods": 4,  # per 15 s, or +100%, whichever is more
    "hpa_scale_up_percent": 100,
    "hpa_period_s": 15,
}


def fail(msg):
    print(f"capacity.py: {msg}", file=sys.stderr)
    sys.exit(1)


def read(rel):
    path = ROOT / rel
    if not path.exists():
        fail(f"missing input {rel}")
    return path.read_text()


# ---------------------------------------------------------------------------------------------
# Inputs


def section(text, name, rel=BENCHMARKS):
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    b, e = text.find(begin), text.find(end)
    if b < 0 or e < b:
        fail(f"{rel} has no section {name} ({begin} … {end})")
    return text[b + len(begin):e]


def md_tables(block):
    """Markdown tables in a block as lists of dicts keyed by the header cells."""
    tables, rows, header = [], None, None
    for line in block.splitlines() + [""]:
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line[1:-1].split("|")]
            if header is None:
                header, rows = cells, []
            elif all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            else:
                rows.append(dict(zip(header, cells, strict=True)))
        elif header is not None:
            tables.append(rows)
            header, rows = None, None
    return tables


def num(cell):
    m = re.search(r"-?[0-9][0-9,]*(\.[0-9]+)?", cell)
    if not m:
        fail(f"not a number: {cell!r}")
    return float(m.group(0).replace(",", ""))


def parse_sweep(bench):
    block = section(bench, "sweep")
    machine = re.search(r"Machine: ([^.]+(?:\.[^ ][^.]*)*)\.", block)
    models = {}
    for part in re.split(r"^## ", block, flags=re.M)[1:]:
        name = part.split("\n", 1)[0].strip()
        ceiling = re.search(r"Closed-loop ceiling: ([0-9.]+) req/s \(([0-9]+) clients\)", part)
        tables = md_tables(part)
        if not tables:
            fail(f"{BENCHMARKS} sweep: no table for {name}")
        steps = []
        for r in tables[0]:
            try:
                steps.append({
                    "step": r["step (of ceiling)"],
                    "target": num(r["target req/s"]),
                    "achieved": num(r["achieved req/s"]),
                    "p50": num(r["p50 ms"]),
                    "p99": num(r["p99 ms"]),
                    "late_pct": num(r["sent late"]),
                    "errors": num(r["errors"]),
                })
            except KeyError as e:
                fail(f"{BENCHMARKS} sweep, {name}: no column {e}")
        steps.sort(key=lambda s: s["target"])
        models[name] = {
            "ceiling": float(ceiling.group(1)) if ceiling else None,
            "ceiling_clients": int(ceiling.group(2)) if ceiling else None,
            "steps": steps,
        }
    if not models:
        fail(f"{BENCHMARKS} sweep: no per-model tables")
    return (machine.group(1) if machine else "unknown machine"), models


def parse_protocols(bench):
    """{model: [{clients, wire, through Envoy rows/s, ...}]} from the protocols section."""
    block = section(bench, "protocols")
    out = {}
    for part in re.split(r"^## ", block, flags=re.M)[1:]:
        name = part.split("\n", 1)[0].strip()
        tables = md_tables(part)
        if tables and "clients" in tables[0][0]:
            out[name] = tables[0]
    return out


def parse_demo_load(protocols):
    """The demo's peak load per model (req/s), and where each figure comes from."""
    text = read(DEMO)
    load, unpriced = {}, {}
    for line in text.splitlines():
        m = re.match(r'\s*"\$LOAD" (open|closed) (.*)', line)
        if not m:
            continue
        mode, args = m.groups()
        model = re.search(r"--model (\S+)", args).group(1)
        if mode == "open":
            rates = [float(x) for x in re.findall(r"--(?:rate|ramp-to) ([0-9.]+)", args)]
            rate, how = max(rates), f"open loop up to {max(rates):.0f} req/s (`{DEMO}`: `{args.split(' --duration')[0]}`)"
        else:
            clients = int(re.search(r"--concurrency ([0-9]+)", args).group(1))
            wire = "gRPC" if "--grpc" in args else "REST, binary tensors" if "--binary" in args else "REST, JSON"
            rows = [r for r in protocols.get(model, []) if r.get("clients") == str(clients) and r.get("wire") == wire]
            if not rows:
                # A phase the protocols benchmark has no cell for: noted, and left out of the peak.
                unpriced.setdefault(model, []).append(f"{clients} clients, {wire}")
                continue
            rate = num(rows[0]["through Envoy rows/s"])
            how = (f"closed loop, {clients} clients, {wire} through Envoy (`{DEMO}`), which the protocols benchmark "
                   f"measured at {rate:.0f} req/s through Envoy")
        if model not in load or rate > load[model][0]:
            load[model] = (rate, how)
    for model, phases in unpriced.items():
        if model not in load:
            fail(f"{DEMO} runs {model} only closed loop, and the protocols benchmark has no cell for {', '.join(phases)}")
        rate, how = load[model]
        load[model] = (rate, how + f"; its other closed-loop phase ({'; '.join(phases)}) has no cell in that benchmark "
                       "and is assumed lighter (fewer clients)")
    return load


def parse_yaml(text):
    """The YAML subset the generated manifests use: block mappings and sequences, plain or
    quoted scalars, comments. Enough for the ScaledObjects and InferenceServices."""
    lines = []
    for raw in text.splitlines():
        s = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if s.strip() and s.strip() != "---":
            lines.append((len(s) - len(s.lstrip()), s.strip()))

    # A mapping key: plain (no ": " inside) or quoted, then ":" and a space or the end of the line.
    KEY = re.compile(r"""('[^']*'|"[^"]*"|[^'"\s][^:]*?|[^'"\s]):(?:\s+|$)""")

    def scalar(v):
        v = v.strip()
        if v in ("[]", "{}"):
            return [] if v == "[]" else {}
        if v[:1] in ("[", "{", "|", ">", "&", "*", "!"):
            fail(f"YAML beyond this script's subset (flow collections, block scalars, anchors, tags): {v[:60]!r}")
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            return v[1:-1]
        if re.fullmatch(r"-?[0-9]+", v):
            return int(v)
        if re.fullmatch(r"-?[0-9]*\.[0-9]+", v):
            return float(v)
        return {"true": True, "false": False, "null": None}.get(v, v)

    def block(i, indent):
        if i < len(lines) and lines[i][1].startswith("- "):
            out = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                rest = lines[i][1][2:]
                sub_indent = indent + 2
                if KEY.match(rest):
                    lines[i] = (sub_indent, rest)
                    val, i = block(i, sub_indent)
                else:
                    val, i = scalar(rest), i + 1
                out.append(val)
            return out, i
        out = {}
        while i < len(lines) and lines[i][0] == indent:
            km = KEY.match(lines[i][1])
            if not km:
                fail(f"cannot parse YAML at: {lines[i][1]!r}")
            key, val = scalar(km.group(1)), lines[i][1][km.end():]
            if val.strip():
                out[key], i = scalar(val), i + 1
            elif i + 1 < len(lines) and (lines[i + 1][0] > indent or
                                         (lines[i + 1][0] == indent and lines[i + 1][1].startswith("- "))):
                out[key], i = block(i + 1, lines[i + 1][0])
            else:
                out[key], i = None, i + 1
        return out, i

    doc, i = block(0, lines[0][0] if lines else 0)
    if i != len(lines):
        fail(f"cannot parse YAML at: {lines[i][1]!r}")
    return doc


def parse_keda():
    out = {}
    files = sorted(glob.glob(str(ROOT / KEDA_GLOB)))
    if not files:
        fail(f"no ScaledObjects at {KEDA_GLOB}")
    for f in files:
        doc = parse_yaml(pathlib.Path(f).read_text())
        labels, spec = doc["metadata"]["labels"], doc["spec"]
        triggers = []
        for t in spec["triggers"]:
            q = t["metadata"]["query"]
            kind = "in_flight" if "in_flight" in q else "routed" if "requests_total" in q and "rate(" in q else None
            if kind is None or t.get("metricType") != "AverageValue":
                fail(f"{f}: a trigger this model does not know ({t.get('name')}: {q})")
            triggers.append({"name": t["name"], "kind": kind, "threshold": float(t["metadata"]["threshold"]),
                             "activation": float(t["metadata"].get("activationThreshold", 0)), "query": q})
        key = (labels["switchyard.dev/model"], labels["switchyard.dev/version"])
        out[key] = {
            "file": str(pathlib.Path(f).relative_to(ROOT)),
            "polling": int(spec.get("pollingInterval", 30)),
            "cooldown": int(spec.get("cooldownPeriod", 300)),
            "min": int(spec.get("minReplicaCount", 0)),
            "max": int(spec.get("maxReplicaCount", 100)),
            "triggers": triggers,
        }
    return out


def parse_pod_cpus():
    cpus = set()
    for f in sorted(glob.glob(str(ROOT / PODS_GLOB))):
        text = pathlib.Path(f).read_text()
        m = re.search(r"requests:\s*\n\s*cpu: '?([0-9.]+)'?", text)
        if m:
            cpus.add(float(m.group(1)))
    return sorted(cpus)


def version_shares(policy_model):
    """Share of the model's client requests each version serves, with the shadow's mirrors and
    the shadow comparison's second request to the primary (`noise`, on by default)."""
    versions = policy_model["versions"]
    total = sum(v["weight"] for v in versions)
    share = {v["name"]: v["weight"] / total for v in versions}
    load = dict(share)
    notes = []
    sh = policy_model.get("shadow")
    if sh:
        s = sh["percent"] / 100.0
        load[sh["version"]] += s * (1.0 - share[sh["version"]])
        notes.append(f"{sh['percent']:g}% of the other versions' requests mirrored to {sh['version']}")
        cmp = sh.get("compare")
        if cmp and cmp.get("noise", True):
            c = cmp.get("percent", 100) / 100.0
            for v in share:
                if v != sh["version"]:
                    load[v] += share[v] * s * c
            notes.append(f"{cmp.get('percent', 100):g}% of those compared, each sent to its primary a second time (`noise`)")
    return share, load, notes


# ---------------------------------------------------------------------------------------------
# The model


def interp(x, xs, ys):
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            f = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return ys[i - 1] + f * (ys[i] - ys[i - 1])
    return ys[-1]


def service_rate(name, sw, slo):
    """(a): the highest step meeting the p99 target and not machine-limited."""
    target = slo["latency_ms"] * ASSUMED["p99_budget_share"]
    steps = sw["steps"]
    ok = [s for s in steps if s["p99"] <= target and s["late_pct"] <= ASSUMED["late_limit_pct"] and s["errors"] == 0]
    if not ok:
        fail(f"{name}: no sweep step meets p99 <= {target} ms with <= {ASSUMED['late_limit_pct']}% late")
    best = max(ok, key=lambda s: s["achieved"])
    above = [s for s in steps if s["target"] > best["target"]]
    why = []
    for s in above:
        r = []
        if s["p99"] > target:
            r.append(f"p99 {s['p99']:g} ms")
        if s["late_pct"] > ASSUMED["late_limit_pct"]:
            r.append(f"{s['late_pct']:g}% sent late")
        why.append(f"{s['step']}: {', '.join(r)}")
    skipped = [s for s in steps if s["target"] < best["target"] and s not in ok]
    # The highest offered rate the backend sustained (every step up to it kept up).
    keep = None
    for s in steps:
        if s["achieved"] >= ASSUMED["keep_up_fraction"] * s["target"]:
            keep = s
        else:
            break
    return {
        "p99_target": target,
        "step": best,
        "rate": best["achieved"],
        "above": why,
        "skipped": skipped,
        "keep_up": keep["target"] if keep else steps[0]["target"],
        "keep_up_step": keep,
        "xs": [s["target"] for s in steps],
        "p50s": [s["p50"] for s in steps],
        "p99s": [s["p99"] for s in steps],
        "last_p99": steps[-1]["p99"],
    }


def traffic_shape(t_s):
    """0 at the trough hour, 1 at the peak hour, raised-cosine halves (smooth at both ends)."""
    h = (t_s / 3600.0) % 24.0
    lo, hi = ASSUMED["trough_hour"], ASSUMED["peak_hour"]
    rise = (hi - lo) % 24.0
    since = (h - lo) % 24.0
    if since <= rise:
        return 0.5 * (1.0 - math.cos(math.pi * since / rise))
    return 0.5 * (1.0 + math.cos(math.pi * (since - rise) / (24.0 - rise)))


SHAPE = [ASSUMED["trough_fraction"] + (1.0 - ASSUMED["trough_fraction"]) * traffic_shape(t) for t in range(86400)]


def traffic(t_s, peak):
    """The model's client requests/s at second t_s (periodic over the day)."""
    return peak * SHAPE[t_s % 86400]


def simulate(lam_of, curve, keda, delay_s, cap=True):
    """One version's Deployment under KEDA + HPA over two days, one-second steps; returns the
    second day, per second: pods (started, billed), ready pods, and the HPA's recommendation before the cap."""
    T = 2 * 86400
    poll = keda["polling"]
    max_r = keda["max"] if cap else 10**9
    min_r = keda["min"]
    pods = []  # ready times, one per pod of the Deployment
    recs = []  # (t, recommendation) within the scale-down stabilisation window
    last_active = -10**9
    wish = 0
    out_pods, out_ready, out_wish = [], [], []
    xs, p50s = curve["xs"], curve["p50s"]
    for t in range(T):
        lam = lam_of(t)
        if t % poll == 0:
            ready = bisect.bisect_right(pods, t)
            inflight = lam * interp(lam / ready, xs, p50s) / 1000.0 if ready else 0.0
            metric = {"in_flight": inflight, "routed": lam}
            active = any(metric[tr["kind"]] > tr["activation"] for tr in keda["triggers"])
            if active:
                last_active = t
            cur = len(pods)
            if cur == 0:
                new = max(1, min_r) if active else min_r
                wish = new
            elif not active and min_r == 0 and t - last_active >= keda["cooldown"]:
                new = 0
                recs = []
            else:
                want = 0
                for tr in keda["triggers"]:
                    m = metric[tr["kind"]]
                    ratio = m / (tr["threshold"] * cur)
                    want = max(want, cur if abs(ratio - 1.0) <= ASSUMED["hpa_tolerance"] else math.ceil(m / tr["threshold"]))
                wish = max(want, max(1, min_r))
                rec = min(max_r, wish)
                recs = [(ts, r) for ts, r in recs if t - ts < ASSUMED["hpa_scale_down_window_s"]] + [(t, rec)]
                if rec > cur:
                    up = max(cur + ASSUMED["hpa_scale_up_pods"], math.ceil(cur * (1 + ASSUMED["hpa_scale_up_percent"] / 100.0)))
                    new = min(rec, up)
                else:
                    new = min(cur, max(r for _, r in recs))
            if new > cur:
                pods.extend([t + delay_s] * (new - cur))
            elif new < cur:
                del pods[new:]  # pods is sorted by ready time: the ones not ready yet go first, then the youngest
        if t >= 86400:
            out_pods.append(len(pods))
            out_ready.append(bisect.bisect_right(pods, t))
            out_wish.append(wish)
    return out_pods, out_ready, out_wish


def minute_stats(lam_of, pods, ready, curve):
    """Per minute of the day: worst per-replica load, p99 estimate, and flags."""
    out = []
    target, keep = curve["p99_target"], curve["keep_up"]
    for m in range(1440):
        worst_load, worst_p99, over, overloaded, pod_max, pod_sum = 0.0, 0.0, False, False, 0, 0
        for s in range(m * 60, m * 60 + 60):
            lam = lam_of(86400 + s)
            pod_max = max(pod_max, pods[s])
            pod_sum += pods[s]
            if lam <= 0:
                continue
            if ready[s] == 0:
                overloaded, over, worst_load, worst_p99 = True, True, math.inf, math.inf
                continue
            per = lam / ready[s]
            worst_load = max(worst_load, per)
            p99 = math.inf if per > curve["xs"][-1] else interp(per, curve["xs"], curve["p99s"])
            worst_p99 = max(worst_p99, p99)
            over |= p99 > target
            overloaded |= per > keep
        out.append({"load": worst_load, "p99": worst_p99, "over": over, "overloaded": overloaded,
                    "pods_max": pod_max, "pods_mean": pod_sum / 60.0})
    return out


# ---------------------------------------------------------------------------------------------
# Output


def fmt_rate(x):
    if x == math.inf:
        return "∞"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def fmt_ms(x, last):
    if x == math.inf:
        return f"> {last:.0f} (past the sweep)"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def money(x):
    if x >= 100:
        return f"${x:,.0f}"
    if x >= 1:
        return f"${x:.2f}"
    if x <= 0:
        return "$0"
    # Two significant figures, however small: $0.0000024.
    return f"${x:.{max(2, 1 - math.floor(math.log10(x)))}f}"


def nice_step(maxv, n=5):
    raw = maxv / n if maxv > 0 else 1
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def short(x):
    if x >= 1e6:
        return f"{x / 1e6:g}M"
    if x >= 1e4:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def runs(minutes):
    """Consecutive minutes as (start, end) runs."""
    out = []
    for m in minutes:
        if out and out[-1][1] == m:
            out[-1][1] = m + 1
        else:
            out.append([m, m + 1])
    return out


def steps(values, X, Y):
    """A step line's points, one corner pair per change."""
    pts = [f"{X(0):.1f},{Y(values[0]):.1f}"]
    for m in range(1, len(values)):
        if values[m] != values[m - 1]:
            pts.append(f"{X(m):.1f},{Y(values[m - 1]):.1f} {X(m):.1f},{Y(values[m]):.1f}")
    pts.append(f"{X(len(values)):.1f},{Y(values[-1]):.1f}")
    return " ".join(pts)


def svg_chart(scale, panels):
    """Traffic and replicas over the day, one panel per model (the sweep charts' style)."""
    W, PH, TOP = 760, 250, 44
    H = TOP + PH * len(panels) + 10
    x0, x1 = 70, 660
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{x0}" y="20" font-size="15" font-weight="bold">KEDA on a simulated day at {scale}× the demo load: traffic and replicas</text>',
         f'<text x="{x0}" y="36" font-size="11" fill="#555">scripts/capacity.py (docs/capacity.md). Shaded: minutes a version ran past the load the sweep sustained.</text>']
    def X(minute):
        return x0 + (x1 - x0) * minute / 1440.0

    for i, p in enumerate(panels):
        top = TOP + i * PH + 22
        bot = top + PH - 70
        def Y(v, vmax, top=top, bot=bot):
            return bot - (bot - top) * v / vmax

        lam_max = max(p["traffic"])
        ls = nice_step(lam_max)
        lmax = ls * math.ceil(lam_max / ls)
        rep_max = max(max(p["pods"]), max(p["wish"]) if p["wish"] else 0, 1)
        rs = max(1, nice_step(rep_max))
        rmax = rs * math.ceil(rep_max / rs)
        o.append(f'<text x="{x0}" y="{top - 6}" font-size="13" font-weight="bold">{p["title"]}</text>')
        for a, b in runs(p["overloaded"]):
            o.append(f'<rect x="{X(a):.1f}" y="{top}" width="{X(b) - X(a):.2f}" height="{bot - top}" fill="#f6d2d2"/>')
        k = 0
        while k * ls <= lmax + 1e-9:
            y = Y(k * ls, lmax)
            o.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{x0 - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#1f77b4">{short(k * ls)}</text>')
            k += 1
        k = 0
        while k * rs <= rmax + 1e-9:
            y = Y(k * rs, rmax)
            o.append(f'<text x="{x1 + 6}" y="{y + 4:.1f}" font-size="11" fill="#d62728">{short(k * rs)}</text>')
            k += 1
        for h in range(0, 25, 2):
            x = X(h * 60)
            o.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bot}" stroke="#eee"/>'
                     f'<text x="{x:.1f}" y="{bot + 15}" font-size="11" text-anchor="middle">{h:02d}:00</text>')
        o.append(f'<rect x="{x0}" y="{top}" width="{x1 - x0}" height="{bot - top}" fill="none" stroke="#444"/>')
        o.append(f'<text transform="translate(16 {(top + bot) / 2:.0f}) rotate(-90)" font-size="12" text-anchor="middle" fill="#1f77b4">requests/s</text>')
        o.append(f'<text transform="translate({W - 14} {(top + bot) / 2:.0f}) rotate(90)" font-size="12" text-anchor="middle" fill="#d62728">replicas</text>')
        pts = " ".join(f"{X(m + 2.5):.1f},{Y(sum(p['traffic'][m:m + 5]) / 5, lmax):.1f}" for m in range(0, 1440, 5))
        o.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.8" points="{pts}"/>')
        if p["wish"] and max(p["wish"]) > max(p["pods"]):
            pts = steps(p["wish"], X, lambda v, Y=Y, rmax=rmax: Y(v, rmax))
            o.append(f'<polyline fill="none" stroke="#ff7f0e" stroke-width="1.4" stroke-dasharray="4 3" points="{pts}"/>')
        pts = steps(p["pods"], X, lambda v, Y=Y, rmax=rmax: Y(v, rmax))
        o.append(f'<polyline fill="none" stroke="#d62728" stroke-width="1.8" points="{pts}"/>')
        ly = bot + 36
        items = [("#1f77b4", "traffic, req/s (left)", ""), ("#d62728", "replicas, all versions (right)", "")]
        if p["wish"] and max(p["wish"]) > max(p["pods"]):
            items.append(("#ff7f0e", "the same without maxReplicaCount", "4 3"))
        lx = x0
        for colour, label, dash in items:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            o.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"{d}/>'
                     f'<text x="{lx + 26}" y="{ly + 4}" font-size="12">{label}</text>')
            lx += 40 + 6 * len(label)
    o.append("</svg>")
    return "\n".join(o) + "\n"


def build():
    bench = read(BENCHMARKS)
    sweep_machine, sweep = parse_sweep(bench)
    protocols = parse_protocols(bench)
    demo = parse_demo_load(protocols)
    cold = json.loads(read(COLD_START))
    prices = json.loads(read(PRICES))
    cpu_price = float(prices["hourly_cost"]["cpu"])
    price = f"${cpu_price:g}"
    keda = parse_keda()
    policy = json.loads(read(POLICY))
    pod_cpus = parse_pod_cpus()
    priced_vcpus = re.search(r"([0-9]+) vCPUs", prices.get("description", ""))
    A = ASSUMED

    models = [m for m in policy["models"] if m in sweep]
    missing = [m for m in policy["models"] if m not in sweep or m not in demo]
    if missing:
        fail(f"models in {POLICY} without a sweep in {BENCHMARKS} or load in {DEMO}: {', '.join(missing)}")

    L = []
    w = L.append
    w("<!-- Generated by scripts/capacity.py: do not edit by hand; re-run it. "
      "`scripts/capacity.py --check` fails when this file or its charts are stale. -->")
    w("# Capacity on paper\n")
    w("How many backend replicas the demo models need, and what the KEDA autoscaling rule as generated would do with a "
      "day of traffic, worked out from the benchmarks rather than from a cluster. Generated by `scripts/capacity.py` "
      "from the files named below; nothing here was measured on Kubernetes.\n")
    w("**Everything measured here is CPU, on a shared 2-core machine** where the load generator ran beside the backend; "
      "no GPU was measured, so the `gpu` price in `dashboards/prices.json` is not used.\n")

    # ---- inputs
    w("## Inputs\n")
    w("| what | from | kind |")
    w("|---|---|---|")
    w(f"| latency and throughput per model: the saturation sweep (open-loop steps; achieved req/s, p50, p99, share sent late) | "
      f"`{BENCHMARKS}`, section `sweep` ({sweep_machine}) | measured |")
    w(f"| start-up time per model version (spawn → ready) | `{COLD_START}` ({cold['machine']}, {cold['runs_per_version']} runs, "
      f"load average {cold.get('load_average_1m', {}).get('before', '?')}) | measured |")
    w(f"| the demo's traffic | `{DEMO}`; the `protocols` section of `{BENCHMARKS}` for a closed-loop phase's rate | measured / configured |")
    w(f"| versions, weights, shadow, SLOs | `{POLICY}` | configured |")
    w(f"| autoscaling: triggers, thresholds, polling, cooldown, min/max replicas | `{KEDA_GLOB}` | configured |")
    w(f"| hourly price of a CPU engine: {price} | `{PRICES}` | configured |")
    w("| everything in the list below | this script (`ASSUMED`) | **assumed** |\n")
    w("Assumed:\n")
    w(f"- The backend's p99 target is {A['p99_budget_share']:.0%} of the SLO's latency threshold in the policy (the rest is for "
      "Envoy, the network and autoscaling transients). The sweep reports p99; where the SLO's objective is a lower quantile "
      "(resnet18: p95), meeting it at p99 is stricter than needed.")
    w(f"- A sweep step with more than {A['late_limit_pct']:g}% of its requests sent late was limited by the machine (the generator "
      "shares the cores), not only by the backend, and does not count as a measured service rate.")
    w(f"- Headroom: each replica is planned at the measured rate ÷ {A['headroom']:g} (the sweep is one run of 4 s steps, and "
      "timings on this machine move by tens of percent between runs).")
    w(f"- Traffic: a smooth daily curve, trough {A['trough_fraction']:.0%} of the peak at {A['trough_hour']:02.0f}:00, peak at "
      f"{A['peak_hour']:02.0f}:00 (raised-cosine halves), one-second steps, at {' and '.join(f'{s:,}×' for s in A['scales'])} "
      "the demo's peak load. No spikes, no weekly pattern.")
    w(f"- Scale-up: a new pod is ready {A['scheduling_allowance_s']:g} s (scheduling and container start on a node with room and "
      "the image already pulled; the readiness probe's 2 s period) plus the measured cold start (the worst run's spawn → ready) "
      f"after the HPA asks for it; {A['slow_allowance_s']:g} s instead (a new node, an image pull) as a sensitivity case. Node "
      "autoscaling is not modelled.")
    w(f"- KEDA drives an HPA with Kubernetes' defaults (the ScaledObjects set no `advanced` behaviour): tolerance "
      f"{A['hpa_tolerance']:g}, scale-up at most +{A['hpa_scale_up_percent']}% or +{A['hpa_scale_up_pods']} pods per "
      f"{A['hpa_period_s']} s, scale-down only to the highest recommendation of the last {A['hpa_scale_down_window_s']} s "
      "(the stabilisation window); its sync period taken as the ScaledObject's `pollingInterval`. Scale-to-zero (min 0) after "
      "`cooldownPeriod` with every trigger at or below its activation threshold.")
    w("- In-flight requests per replica follow Little's law: per-replica load × latency at that load, the latency being the "
      "sweep's p50 interpolated linearly in offered (target) req/s (held flat below the first step and beyond the last); the "
      "mean would be a little higher. Load spreads evenly over ready pods; metrics reach KEDA with no scrape lag.")
    w(f"- A minute is **overloaded** when a version's per-replica load passed the highest offered rate the sweep shows the "
      f"backend sustaining (every step up to it achieved ≥ {A['keep_up_fraction']:.0%} of its target), or it had traffic and "
      "no ready pod. The hourly p99 is the worst minute's estimate (the sweep's p99 interpolated at that minute's worst "
      "per-replica load), an upper bound for the hour.\n")

    # ---- demo load
    w("The demo's load (the peak of what `scripts/demo.sh` sends, per model):\n")
    for m in models:
        w(f"- {m}: **{demo[m][0]:,.0f} req/s** — {demo[m][1]}.")
    w("")
    w("Traffic per version, from the policy (shares of the model's client requests, duplicates included):\n")
    w("| model | version | weight | load share | from |")
    w("|---|---|---:|---:|---|")
    shares = {}
    for m in models:
        share, load, notes = version_shares(policy["models"][m])
        shares[m] = load
        for v in share:
            w(f"| {m} | {v} | {share[v]:.0%} | {load[v]:.2%} | {'; '.join(notes) if notes else 'the split'} |")
    w("")

    # ---- (a)
    w("## (a) Service rate per replica\n")
    curves = {}
    w("| model | SLO (policy) | backend p99 target | highest step that meets it | achieved req/s | p50 / p99 ms | sent late | "
      f"planned per replica (÷ {A['headroom']:g}) | replicas per 1,000 req/s | CPU cost per 1k inferences at the planned rate |")
    w("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for m in models:
        slo = policy["models"][m]["slo"]
        c = service_rate(m, sweep[m], slo)
        curves[m] = c
        s = c["step"]
        planned = c["rate"] / A["headroom"]
        per_1k = math.ceil(1000.0 / planned)
        cost_1k = cpu_price / (planned * 3600.0) * 1000.0
        w(f"| {m} | p{slo['latency_objective'] * 100:g} ≤ {slo['latency_ms']:g} ms | {c['p99_target']:g} ms | {s['step']} of the "
          f"{sweep[m]['ceiling']:g} req/s ceiling | {s['achieved']:,.0f} | {s['p50']:g} / {s['p99']:g} | {s['late_pct']:g}% | "
          f"{planned:,.0f} req/s | {per_1k} | {money(cost_1k)} |")
    w("")
    for m in models:
        c = curves[m]
        line = f"- {m}: the steps above it fail: {'; '.join(c['above']) if c['above'] else 'none'}."
        if c["skipped"]:
            line += (" Below it, " + ", ".join(f"{s['step']} ({s['late_pct']:g}% late)" for s in c["skipped"])
                     + " was also machine-limited; the criterion takes the highest step that passes.")
        if c["above"] and "p99" not in c["above"][0]:
            line += (" What bounds the figure is the machine, not the latency target: the next step still met the target "
                     "but with requests leaving late, so the backend's own limit on a dedicated machine may well be higher.")
        line += (f" The sweep shows the backend sustaining up to {c['keep_up']:,.0f} req/s offered "
                 f"({c['keep_up_step']['step'] if c['keep_up_step'] else '?'} step).")
        w(line)
    w("")
    w(f"The replicas figure is ceil(1,000 × {A['headroom']:g} ÷ rate). The cost column is `{PRICES}`'s CPU price "
      f"({price}/h) over the planned rate, i.e. a replica kept exactly at it; the day below is what autoscaling "
      "actually spends." + ("" if not (priced_vcpus and pod_cpus) else
      f" That price is for {priced_vcpus.group(1)} vCPUs per engine (its description), while the generated "
          f"InferenceServices request {', '.join(f'{x:g}' for x in pod_cpus)} CPU per pod (`{PODS_GLOB}`) and the rates were "
          f"measured on {sweep_machine}, shared with the load generator: billed by their request, the CPU costs here would be "
          f"{', '.join(f'{x / float(priced_vcpus.group(1)):.0%}' for x in pod_cpus)} of those shown."))
    w("")

    # ---- (b)
    w("## (b) KEDA over a day\n")
    w("The ScaledObjects as generated:\n")
    w("| version | min | max | pollingInterval | cooldownPeriod | triggers (AverageValue per replica) | cold start used (worst run, spawn → ready) |")
    w("|---|---:|---:|---:|---:|---|---:|")
    cold_s = {}
    for (m, v), k in sorted(keda.items()):
        entry = cold["models"].get(f"{m}:{v}")
        if entry is None:
            fail(f"{COLD_START} has no {m}:{v}")
        cold_s[(m, v)] = entry["ready_max_ms"] / 1000.0
        trig = "; ".join(f"`{t['name']}` {t['threshold']:,.0f} (activation {t['activation']:g})" for t in k["triggers"])
        w(f"| {m}:{v} | {k['min']} | {k['max']} | {k['polling']} s | {k['cooldown']} s | {trig} | {cold_s[(m, v)]:.2f} s |")
    w("")
    w("The `in-flight` trigger asks for ceil(Σ in-flight ÷ threshold) replicas; the `routed` trigger (the filter's request "
      "rate, threshold 1,000,000 req/s) wakes a version from zero, when no pod exists to report in-flight requests, and "
      "otherwise asks for 1. The higher of the two wins.\n")

    results = {}
    for scale in A["scales"]:
        for m in models:
            peak = demo[m][0] * scale
            res = {"versions": {}, "peak": peak}
            def lam_model(t, peak=peak):
                return traffic(t, peak)

            for v, share in shares[m].items():
                k = keda.get((m, v))
                if k is None:
                    fail(f"no ScaledObject for {m}:{v} under {KEDA_GLOB}")
                def lam_of(t, share=share, peak=peak):
                    return share * traffic(t, peak)

                delay = A["scheduling_allowance_s"] + cold_s[(m, v)]
                pods, ready, wish = simulate(lam_of, curves[m], k, delay)
                stats = minute_stats(lam_of, pods, ready, curves[m])
                # The same without maxReplicaCount: the cap binds where the two differ.
                upods, uready, _ = simulate(lam_of, curves[m], k, delay, cap=False)
                capped = max(upods) > k["max"]
                un = None
                if capped:
                    ustats = minute_stats(lam_of, upods, uready, curves[m])
                    un = {"peak": max(upods), "rh": sum(upods) / 3600.0,
                          "overloaded": sum(1 for s in ustats if s["overloaded"]), "over": sum(1 for s in ustats if s["over"]),
                          "minutes": [max(upods[mm * 60:(mm + 1) * 60]) for mm in range(1440)]}
                spods, sready, _ = simulate(lam_of, curves[m], k, A["slow_allowance_s"] + cold_s[(m, v)])
                sstats = minute_stats(lam_of, spods, sready, curves[m])
                # The capacity plan of (a), followed minute by minute with no delay, for comparison.
                planned = curves[m]["rate"] / A["headroom"]
                plan_rh = sum(max(k["min"], math.ceil(lam_of(86400 + s) / planned)) for s in range(86400)) / 3600.0
                plan_peak = max(k["min"], math.ceil(share * peak / planned))
                res["versions"][v] = {
                    "pods": pods, "stats": stats, "capped": capped, "uncapped": un,
                    "max": k["max"], "min": k["min"], "share": share,
                    "slow_overloaded": sum(1 for s in sstats if s["overloaded"]), "slow_over": sum(1 for s in sstats if s["over"]),
                    "plan_rh": plan_rh, "plan_peak": plan_peak,
                    "cap_minutes": sum(1 for mm in range(1440) if max(wish[mm * 60:(mm + 1) * 60]) > k["max"]),
                    "changes": sum(1 for i in range(1, len(pods)) if pods[i] != pods[i - 1]),
                }
            res["inferences"] = sum(lam_model(86400 + s) for s in range(86400))
            results[(scale, m)] = res

    w("### Per scenario\n")
    w("Replica-hours count every pod from the moment the HPA asks for it (a starting pod is billed) until it is removed; "
      f"cost is replica-hours × {price}; per 1k inferences divides by the model's client requests that day "
      "(mirrors and comparison duplicates are served but not counted as inferences).\n")
    w("| scenario | peak traffic | peak replicas (per version) | replica-hours / day | cost / day | cost per 1k inferences | "
      "replica count changes / day | overloaded minutes | minutes over the p99 target | the plan of (a): peak, replica-hours, cost | "
      f"with {A['slow_allowance_s']:g} s to start a pod: overloaded, over target |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scale in A["scales"]:
        for m in models:
            res = results[(scale, m)]
            vs = res["versions"]
            total = [sum(vs[v]["pods"][s] for v in vs) for s in range(86400)]
            rh = sum(total) / 3600.0
            cost = rh * cpu_price
            per_k = cost / (res["inferences"] / 1000.0)
            over_m = sum(1 for mm in range(1440) if any(vs[v]["stats"][mm]["over"] for v in vs))
            ol_m = sum(1 for mm in range(1440) if any(vs[v]["stats"][mm]["overloaded"] for v in vs))
            res.update(total=total, rh=rh, cost=cost, per_k=per_k, over_m=over_m, ol_m=ol_m)
            peaks = ", ".join(f"{v} {max(vs[v]['pods'])}" + (" = max" if vs[v]["capped"] else "") for v in vs)
            changes = sum(vs[v]["changes"] for v in vs)
            plan_rh = sum(vs[v]["plan_rh"] for v in vs)
            plan_pk = ", ".join(f"{v} {vs[v]['plan_peak']}" for v in vs)
            plan_cost = money(plan_rh * cpu_price)
            slow = f"{sum(vs[v]['slow_overloaded'] for v in vs)}, {sum(vs[v]['slow_over'] for v in vs)}"
            w(f"| {m}, {scale:,}× | {res['peak']:,.0f} req/s | {max(total)} ({peaks}) | {rh:,.1f} | {money(cost)} | {money(per_k)} | "
              f"{changes} | {ol_m} | {over_m} | {plan_pk}; {plan_rh:,.1f}, {plan_cost} | {slow} |")
    w("")
    w("Overloaded and over-target minutes are counted over the model (a minute counts once if any version had it); the "
      "sensitivity column counts them per version and adds them up.\n")

    caps = []
    for scale in A["scales"]:
        for m in models:
            for v, r in results[(scale, m)]["versions"].items():
                if r["capped"]:
                    u = r["uncapped"]
                    held = sum(1 for s in r["stats"] if s["overloaded"])
                    text = (f"- **{m}:{v} at {scale:,}×: `maxReplicaCount: {r['max']}` caps it.** The HPA's recommendation is "
                            f"above {r['max']} for {r['cap_minutes']} minutes of the day. Without the cap it peaks at "
                            f"{u['peak']:,} replicas ({u['rh']:,.0f} replica-hours, {money(u['rh'] * cpu_price)} a day, "
                            f"{u['overloaded']} overloaded minutes); the capacity plan of (a) needs {r['plan_peak']:,} at the peak "
                            f"({r['plan_rh']:,.0f} replica-hours). ")
                    if held:
                        text += (f"Held at {r['max']}, the version is overloaded for {held} minutes of the day: with this rule "
                                 f"the cap should be at least {u['peak']:,}")
                        if u["overloaded"]:
                            text += (f", and even uncapped the rule leaves it overloaded for {u['overloaded']} minutes, so the "
                                     f"cap wants the plan's {r['plan_peak']:,} with a threshold that matches the model (below).")
                        else:
                            text += (f"; with a threshold that matches the model (below), the plan's {r['plan_peak']:,} would "
                                     "do.")
                    else:
                        text += (f"Held at {r['max']} it is never past its sustained load: here the cap only trims what the "
                                 "rule over-asks.")
                    caps.append(text)
    if caps:
        w("Where `maxReplicaCount` binds:\n")
        for c in caps:
            w(c)
        w("")
    else:
        w("`maxReplicaCount` binds in no scenario.\n")

    w("### Charts\n")
    for scale in A["scales"]:
        w(f"![KEDA at {scale}× the demo load](bench/capacity-{scale}x.svg)\n")

    w("### Hour by hour\n")
    w("Traffic is the model's mean over the hour; replicas are all versions' pods (mean, max); the per-replica load is the "
      "worst second of the busiest version; the p99 estimate is the worst minute's.\n")
    for scale in A["scales"]:
        for m in models:
            res = results[(scale, m)]
            vs = res["versions"]
            c = curves[m]
            w(f"#### {m} at {scale:,}× ({res['peak']:,.0f} req/s at the peak; p99 target {c['p99_target']:g} ms; sustained "
              f"{c['keep_up']:,.0f} req/s per replica in the sweep)\n")
            w("| hour | traffic req/s | replicas mean | replicas max | worst per-replica req/s | p99 estimate ms | minutes over target | overloaded minutes |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|")
            for h in range(24):
                mins = range(h * 60, h * 60 + 60)
                lam = sum(traffic(86400 + s, res["peak"]) for s in range(h * 3600, h * 3600 + 3600)) / 3600.0
                tot = res["total"][h * 3600:(h + 1) * 3600]
                load = max(vs[v]["stats"][mm]["load"] for v in vs for mm in mins)
                p99 = max(vs[v]["stats"][mm]["p99"] for v in vs for mm in mins)
                over = sum(1 for mm in mins if any(vs[v]["stats"][mm]["over"] for v in vs))
                ol = sum(1 for mm in mins if any(vs[v]["stats"][mm]["overloaded"] for v in vs))
                w(f"| {h:02d}:00 | {lam:,.0f} | {sum(tot) / 3600.0:.1f} | {max(tot)} | {fmt_rate(load)} | {fmt_ms(p99, c['last_p99'])} | "
                  f"{over or ''} | {ol or ''} |")
            w("")

    # ---- findings
    w("## What it says\n")
    for m in models:
        c = curves[m]
        planned = c["rate"] / A["headroom"]
        k = keda[(m, next(iter(shares[m])))]
        thr = next(t["threshold"] for t in k["triggers"] if t["kind"] == "in_flight")
        # The per-replica load at which Little's law gives `thr` in flight.
        lo, hi = 0.0, c["xs"][-1]
        for _ in range(60):
            mid = (lo + hi) / 2
            if mid * interp(mid, c["xs"], c["p50s"]) / 1000.0 < thr:
                lo = mid
            else:
                hi = mid
        at_thr = (lo + hi) / 2
        inflight_planned = planned * interp(planned, c["xs"], c["p50s"]) / 1000.0
        if at_thr < planned * 0.9:
            verdict = (f"below the planned rate: the rule runs about {planned / at_thr:.1f}× the replicas the measurements "
                       "call for")
        elif at_thr > c["keep_up"]:
            verdict = (f"past the {c['keep_up']:,.0f} req/s the sweep shows it sustaining. Below overload a replica holds "
                       f"only about {inflight_planned:.1f} in flight, well under the threshold, so the HPA recommends fewer "
                       "replicas; once the stabilisation window lets it scale down the rest overload, their in-flight count "
                       "jumps and it scales up again: a saw-tooth every few minutes (the replica count changes column), "
                       "with overloaded minutes in every busy hour")
        else:
            verdict = "close to the planned rate"
        w(f"- **{m}**: the `in-flight` threshold of {thr:g} per replica is reached at about {at_thr:,.0f} req/s per replica "
          f"(Little's law on the sweep's p50), {verdict}. The planned rate ({planned:,.0f} req/s) corresponds to about "
          f"{inflight_planned:.1f} in flight per replica, so a threshold near {max(1, round(inflight_planned)):,} would scale "
          "this model on what it was measured to do (derived, not tried on a cluster; on a GPU the figure changes).")
    idle = [f"{m}:{v}" for m in models for v, sh in shares[m].items() if sh == 0]
    w("- The trough is " + f"{A['trough_fraction']:.0%}" + " of the peak, so no version with traffic is ever idle for "
      "`cooldownPeriod`: scale-to-zero happens only for a version with no traffic at all"
      + (f" ({', '.join(idle)}: no weight and no shadow, zero replicas all day)." if idle else "."))
    diffs = []
    for scale in A["scales"]:
        for m in models:
            vs = results[(scale, m)]["versions"]
            base = sum(sum(1 for st in vs[v]["stats"] if st["overloaded"]) for v in vs)
            slow = sum(vs[v]["slow_overloaded"] for v in vs)
            diffs.append(f"{m} {scale:,}×: {base} → {slow}")
    w(f"- Start-up time: with {A['slow_allowance_s']:g} s instead of {A['scheduling_allowance_s']:g} s + the cold start, "
      f"overloaded version-minutes go {'; '.join(diffs)}. Against a smooth daily curve the traffic moves a few percent "
      "while a pod starts; spikes (not modelled) are where start-up time shows.")
    w("")
    w("## Limits\n")
    w(f"- Measured on CPU ({sweep_machine}), the cores shared between the backend and the load generator; one sweep run of "
      "4 s per step. A pod with its own cores, or a GPU, has other figures; re-run the sweep there and this script.")
    w("- The cold start was measured as a process start with the files in the page cache; a pod on a fresh node also "
      "pulls and reads its image (torch with its CUDA libraries is several GB), covered only by the allowance.")
    w("- Little's law with the client-side p50 (loopback, generator included) stands in for the backend's mean in-flight "
      "gauge; the real gauge is sampled by Prometheus every scrape and KEDA sees it late by up to a scrape interval.")
    w("- Even spreading over ready pods, no per-pod variance, no retries, no 429s from the backend's admission limits "
      "(past overload the real queue is bounded, the model's is not).")
    w("- The traffic shape, its trough, the headroom and the allowances are assumptions, stated above; change `ASSUMED` in "
      "the script and re-run.")
    w("- Sticky sessions and guard trips, which move traffic between versions, are not modelled; the split is the policy's.")
    md = "\n".join(L).rstrip() + "\n"

    svgs = {}
    for scale in A["scales"]:
        panels = []
        for m in models:
            res = results[(scale, m)]
            vs = res["versions"]
            traffic_m = [sum(traffic(86400 + s, res["peak"]) for s in range(mm * 60, mm * 60 + 60)) / 60.0 for mm in range(1440)]
            pods_m = [max(res["total"][mm * 60:(mm + 1) * 60]) for mm in range(1440)]
            anycap = any(vs[v]["capped"] for v in vs)
            wish_m = [sum(vs[v]["uncapped"]["minutes"][mm] if vs[v]["capped"] else max(vs[v]["pods"][mm * 60:(mm + 1) * 60])
                          for v in vs) for mm in range(1440)] if anycap else []
            ol = [mm for mm in range(1440) if any(vs[v]["stats"][mm]["overloaded"] for v in vs)]
            panels.append({"title": f"{m}: {res['peak']:,.0f} req/s at the peak, replicas of {' + '.join(vs)}",
                           "traffic": traffic_m, "pods": pods_m, "wish": wish_m, "overloaded": ol})
        svgs[OUT_SVG.format(scale=scale)] = svg_chart(scale, panels)
    return md, svgs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the written files differ from what would be written")
    a = ap.parse_args()
    md, svgs = build()
    outputs = {OUT_MD: md, **svgs}
    if a.check:
        stale = [rel for rel, text in outputs.items()
                 if not (ROOT / rel).exists() or (ROOT / rel).read_text() != text]
        if stale:
            print(f"capacity.py: stale (re-run scripts/capacity.py): {', '.join(stale)}", file=sys.stderr)
            sys.exit(1)
        print(f"capacity.py: up to date: {', '.join(outputs)}")
        return
    for rel, text in outputs.items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {rel}")


if __name__ == "__main__":
    main()
