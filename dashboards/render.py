#!/usr/bin/env python3
"""Renders the Prometheus and Alertmanager configuration of Switchyard's local stack.

  render.py prometheus --out-dir D --policy P [--prices F] --envoy H:P --backend H:P [...]
                       [--alertmanager H:P] [--scrape-interval 5s] [--evaluation-interval 5s]
      D/prometheus.yml: scrapes Envoy's /stats/prometheus and every backend's /metrics, loads
      the recording and alerting rules of dashboards/prometheus/ and
      D/switchyard-config.rules.yml: the series the rules take from the filter policy (SLO
      objectives, latency thresholds, which version is stable and which canary) and from the
      price file (hourly cost per device kind).
  render.py alertmanager --out F --webhook URL [--group-wait 30s] [--group-interval 5m]
      Alertmanager: severity=page and severity=ticket to separate webhook receivers
      (URL/page, URL/ticket), grouped by alert, model and version; a page inhibits the ticket
      of the same alert.

Standard library only. Exits non-zero with a message on any problem.
"""
import argparse
import importlib.util
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RULE_FILES = [os.path.join(HERE, "prometheus", f) for f in ("recording-rules.yml", "alerting-rules.yml")]
CONFIG_RULES = "switchyard-config.rules.yml"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")


def fail(msg):
    print(f"render.py: {msg}", file=sys.stderr)
    sys.exit(2)


def envoy_render():
    """envoy/render.py, for the latency histogram's bucket bounds (the SLI needs the exact one)."""
    spec = importlib.util.spec_from_file_location("envoy_render", os.path.join(HERE, "..", "envoy", "render.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {what} {path}: {e}")


def hostport(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        fail(f"'{s}' is not HOST:PORT")
    return s


def duration(s):
    if not DURATION.match(s):
        fail(f"'{s}' is not a Prometheus duration like 5s or 1m")
    return s


def q(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(s))


def atomic_write(path, text):
    """Readers (Prometheus reloading, a test) never see a half-written file: envoy/render.py's."""
    envoy_render().atomic_write(path, text)


def static_rule(record, value, labels):
    lines = [f"      - record: {record}", f"        expr: vector({value!r})", "        labels:"]
    lines += [f"          {k}: {q(v)}" for k, v in labels.items()]
    return "\n".join(lines)


def config_rules(policy, prices, policy_path, prices_path):
    """Static series from the policy and the price file, as recording rules of `vector(x)`."""
    buckets = envoy_render().duration_buckets(policy)
    rules = []
    problems = []
    for model, m in sorted(policy.get("models", {}).items()):
        versions = [v["name"] for v in m.get("versions", [])]
        # The policy lists the stable version first and canaries after it (README: keep the
        # canary last, so that raising its weight only moves traffic to it).
        for i, v in enumerate(versions):
            rules.append(static_rule("switchyard:version_role:info", 1, {"model": model, "version": v, "role": "stable" if i == 0 else "canary"}))
        slo = m.get("slo")
        if not slo:
            continue
        rules.append(static_rule("slo:objective:ratio", float(slo["availability"]), {"model": model, "sli": "availability"}))
        rules.append(static_rule("slo:objective:ratio", float(slo.get("latency_objective", 0.99)), {"model": model, "sli": "latency"}))
        threshold = int(slo["latency_ms"])
        if threshold not in buckets:
            problems.append(f"model {model}: slo.latency_ms {threshold} is not a bound of the latency histogram {buckets}")
            continue
        rules.append(static_rule("slo:latency_threshold:seconds", threshold / 1000, {"model": model}))
        rules.append(static_rule("slo:latency_threshold_bucket:info", 1, {"model": model, "le": str(threshold)}))
    costs = prices.get("hourly_cost")
    if not isinstance(costs, dict) or not costs:
        problems.append(f"{prices_path}: needs \"hourly_cost\": {{\"cpu\": PRICE, \"gpu\": PRICE}}")
        costs = {}
    for kind, price in sorted(costs.items()):
        if kind not in ("cpu", "gpu"):
            problems.append(f"{prices_path}: device kind '{kind}' is not cpu or gpu")
        elif not isinstance(price, (int, float)) or price < 0:
            problems.append(f"{prices_path}: hourly_cost.{kind} must be a non-negative number, got {price!r}")
        else:
            rules.append(static_rule("switchyard:device_hourly_cost:dollars", float(price), {"device_kind": kind}))
    if problems:
        fail("; ".join(problems))
    header = (
        f"# Generated by dashboards/render.py from {policy_path} and {prices_path}: do not edit,\n"
        "# re-render. Constant series the rules of dashboards/prometheus/ join with.\n"
    )
    return header + "groups:\n  - name: switchyard-config\n    rules:\n" + "\n".join(rules) + "\n"


def prometheus(a):
    policy = load_json(a.policy, "policy")
    prices = load_json(a.prices, "price file")
    out = os.path.abspath(a.out_dir)
    atomic_write(os.path.join(out, CONFIG_RULES), config_rules(policy, prices, a.policy, a.prices))
    targets = lambda hps: "[" + ", ".join(q(hostport(h)) for h in hps) + "]"
    alerting = ""
    if a.alertmanager:
        alerting = f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: {targets([a.alertmanager])}\n"
    text = f"""# Generated by dashboards/render.py: do not edit, re-render.
global:
  scrape_interval: {duration(a.scrape_interval)}
  evaluation_interval: {duration(a.evaluation_interval)}
rule_files:
{chr(10).join(f"  - {q(f)}" for f in RULE_FILES + [os.path.join(out, CONFIG_RULES)])}
{alerting}scrape_configs:
  # Envoy: the filter's switchyard_* metrics (labels from the bootstrap's stats_tags) and
  # Envoy's own stats.
  - job_name: switchyard-envoy
    metrics_path: /stats/prometheus
    static_configs:
      - targets: {targets([a.envoy])}
  - job_name: switchyard-backend
    metrics_path: /metrics
    static_configs:
      - targets: {targets(a.backend)}
"""
    atomic_write(os.path.join(out, "prometheus.yml"), text)
    print(f"render.py: {os.path.join(out, 'prometheus.yml')}")


def alertmanager(a):
    url = a.webhook.rstrip("/")
    if not re.match(r"^https?://[^/]+", url):
        fail(f"--webhook '{a.webhook}' is not an http(s) URL")
    text = f"""# Generated by dashboards/render.py: do not edit, re-render.
route:
  # Unknown severities land with the tickets rather than nowhere.
  receiver: ticket
  group_by: [alertname, model, version]
  group_wait: {duration(a.group_wait)}
  group_interval: {duration(a.group_interval)}
  repeat_interval: 12h
  routes:
    - matchers: ['severity="page"']
      receiver: page
      repeat_interval: 1h
    - matchers: ['severity="ticket"']
      receiver: ticket
      repeat_interval: 24h
receivers:
  - name: page
    webhook_configs:
      - url: {q(url + "/page")}
        send_resolved: true
  - name: ticket
    webhook_configs:
      - url: {q(url + "/ticket")}
        send_resolved: true
inhibit_rules:
  # A page inhibits the ticket of the same alert for the same thing (e.g. the 1d/2h burn-rate
  # ticket while the 1h/5m page fires). Labels absent on both sides count as equal.
  - source_matchers: ['severity="page"']
    target_matchers: ['severity="ticket"']
    equal: [alertname, model, version, sli, instance]
"""
    atomic_write(a.out, text)
    print(f"render.py: {a.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prometheus")
    pr.add_argument("--out-dir", required=True)
    pr.add_argument("--policy", required=True)
    pr.add_argument("--prices", default=os.path.join(HERE, "prices.json"))
    pr.add_argument("--envoy", required=True, metavar="HOST:PORT", help="Envoy admin address")
    pr.add_argument("--backend", action="append", required=True, metavar="HOST:PORT", help="backend admin address")
    pr.add_argument("--alertmanager", metavar="HOST:PORT")
    pr.add_argument("--scrape-interval", default="5s")
    pr.add_argument("--evaluation-interval", default="5s")
    am = sub.add_parser("alertmanager")
    am.add_argument("--out", required=True)
    am.add_argument("--webhook", required=True, metavar="URL", help="receivers get URL/page and URL/ticket")
    am.add_argument("--group-wait", default="30s")
    am.add_argument("--group-interval", default="5m")
    a = p.parse_args()
    prometheus(a) if a.cmd == "prometheus" else alertmanager(a)


if __name__ == "__main__":
    main()
