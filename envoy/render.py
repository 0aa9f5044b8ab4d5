#!/usr/bin/env python3
"""Renders Switchyard's Envoy configuration from a filter policy (envoy/policy.json).

  render.py bootstrap --policy P --out F --listen H:P --admin H:P --ecds PATH
                      --upstream CLUSTER=H:P [...] [--collector H:P] [--default-cluster C]
      The static bootstrap: listener -> header scrub -> Switchyard filter (via ECDS) -> router,
      one cluster per model version named in the policy, the collector cluster, stats tags.
      --fault CLUSTER=PERCENT[:STATUS] (repeatable) aborts PERCENT % of the requests the filter
      sends to CLUSTER with STATUS (default 503): a canary with injected errors, for drills
      and for the observability tests.
  render.py filter --policy P --wasm PATH --out F
      The filter configuration Envoy watches (ECDS). Written to a temporary file and renamed,
      which is what makes Envoy pick it up without a restart.

Output is JSON, which Envoy reads as YAML. Exits non-zero with a message on any problem.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

LABELS = ["model", "version", "outcome", "reason", "result", "window", "sli"]
DURATION_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def fail(msg):
    print(f"render.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load_policy(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return raw, json.loads(raw)
    except (OSError, ValueError) as e:
        fail(f"cannot read policy {path}: {e}")


def addr(hostport):
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        fail(f"'{hostport}' is not HOST:PORT")
    return {"socket_address": {"address": host, "port_value": int(port)}}


def cluster(name, hostport):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(hostport)}}]}]},
    }


def duration_buckets(policy):
    """The latency histogram's bucket bounds (ms): the defaults plus every model's SLO latency
    threshold, so that Prometheus can count requests within the threshold exactly
    (dashboards/render.py selects that bucket for the latency SLI)."""
    thresholds = [m["slo"]["latency_ms"] for m in policy.get("models", {}).values() if m.get("slo", {}).get("latency_ms")]
    return sorted(set(DURATION_BUCKETS_MS) | {int(t) for t in thresholds})


def fault_filter(spec, upstream_header):
    """Envoy's fault filter aborting PERCENT % of the requests routed to CLUSTER. It sits after
    the Switchyard filter, so it sees the routing header the filter set, and the filter sees
    the injected responses like any upstream answer (as in an Istio VirtualService fault)."""
    cluster_name, _, rest = spec.partition("=")
    percent, _, status = rest.partition(":")
    try:
        percent, status = float(percent), int(status or 503)
    except ValueError:
        fail(f"--fault '{spec}' is not CLUSTER=PERCENT[:STATUS]")
    if not cluster_name or not 0 < percent <= 100 or not 200 <= status < 600:
        fail(f"--fault '{spec}': need a cluster, 0 < PERCENT <= 100 and 200 <= STATUS < 600")
    return {
        "name": f"fault-{cluster_name}",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "headers": [{"name": upstream_header, "string_match": {"exact": cluster_name}}],
            # Millionths, so that fractional percentages are exact.
            "abort": {"http_status": status, "percentage": {"numerator": round(percent * 10_000), "denominator": "MILLION"}},
        },
    }


def atomic_write(path, text):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".render-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def bootstrap(a):
    _, policy = load_policy(a.policy)
    headers = {k: policy.get(k, d) for k, d in [("upstream_header", "x-switchyard-upstream"), ("shadow_header", "x-switchyard-shadow")]}
    upstreams = {}
    for spec in a.upstream:
        name, _, hp = spec.partition("=")
        upstreams[name] = hp
    needed = [v["cluster"] for m in policy.get("models", {}).values() for v in m.get("versions", [])]
    missing = sorted(set(needed) - set(upstreams))
    if missing:
        fail(f"no --upstream given for cluster(s) {', '.join(missing)}")
    default = a.default_cluster or (needed[0] if needed else None)
    if default not in upstreams:
        fail(f"default cluster {default!r} has no --upstream")
    clusters = [cluster(n, hp) for n, hp in sorted(upstreams.items())]
    collector = (policy.get("collector") or {}).get("cluster")
    if collector:
        if not a.collector:
            fail(f"the policy ships samples to cluster '{collector}': give --collector HOST:PORT")
        clusters.append(cluster(collector, a.collector))
    route_timeout = "60s"
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "name": "models",
            "virtual_hosts": [{
                "name": "models",
                "domains": ["*"],
                "routes": [
                    {
                        # The filter chose a version: route to its cluster, maybe mirror.
                        "match": {"prefix": "/", "headers": [{"name": headers["upstream_header"], "present_match": True}]},
                        "route": {
                            "cluster_header": headers["upstream_header"],
                            "timeout": route_timeout,
                            "request_mirror_policies": [{"cluster_header": headers["shadow_header"]}],
                        },
                    },
                    {
                        # Not a model path, or the filter is unavailable (fail-open): the stable version.
                        "match": {"prefix": "/"},
                        "route": {"cluster": default, "timeout": route_timeout},
                    },
                ],
            }],
        },
        "http_filters": [
            {
                # Clients must never choose a route: internal headers are removed before the
                # Switchyard filter runs, so this holds even if the filter fails open.
                "name": "envoy.filters.http.header_mutation",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                    "mutations": {"request_mutations": [{"remove": h} for h in headers.values()]},
                },
            },
            {
                "name": "switchyard",
                "config_discovery": {
                    "config_source": {"path_config_source": {"path": os.path.abspath(a.ecds)}, "resource_api_version": "V3"},
                    "type_urls": [WASM_TYPE],
                },
            },
            *[fault_filter(f, headers["upstream_header"]) for f in a.fault],
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    if a.no_filter:
        if a.fault:
            fail("--fault needs the Switchyard filter (it matches the routing header the filter sets)")
        hcm["http_filters"] = hcm["http_filters"][2:]
        hcm["route_config"]["virtual_hosts"][0]["routes"] = hcm["route_config"]["virtual_hosts"][0]["routes"][1:]
    config = {
        "node": {"id": "switchyard-local", "cluster": "switchyard"},
        "admin": {"address": addr(a.admin)},
        # Histograms are published at each flush; 1 s keeps dashboards and tests current.
        "stats_flush_interval": "1s",
        "stats_config": {
            "stats_tags": [{"tag_name": k, "regex": f"(;{k}=([^;]*))"} for k in LABELS],
            "histogram_bucket_settings": [
                {"match": {"prefix": "wasmcustom.switchyard_request_duration_ms"}, "buckets": duration_buckets(policy)}
            ],
        },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": addr(a.listen),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
            }],
            "clusters": clusters,
        },
    }
    atomic_write(a.out, json.dumps(config, indent=2) + "\n")


def filter_config(a):
    raw, _ = load_policy(a.policy)
    policy_text = raw.decode()
    wasm = os.path.abspath(a.wasm)
    if not os.path.isfile(wasm):
        fail(f"filter binary {wasm} not found: build it with scripts/build-filter.sh")
    version = hashlib.sha256(raw + wasm.encode()).hexdigest()[:12]
    doc = {
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "switchyard",
            "typed_config": {
                "@type": WASM_TYPE,
                "config": {
                    "name": "switchyard",
                    "root_id": "switchyard",
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy_text},
                    # A crashed VM must not take traffic down: requests then bypass the filter
                    # and take the fallback route (the stable version).
                    "failure_policy": "FAIL_OPEN",
                    "vm_config": {"vm_id": "switchyard", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}},
                },
            },
        }],
    }
    atomic_write(a.out, json.dumps(doc, indent=2) + "\n")
    print(f"render.py: filter config {version} -> {a.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bootstrap")
    b.add_argument("--policy", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--listen", default="127.0.0.1:10000")
    b.add_argument("--admin", default="127.0.0.1:9901")
    b.add_argument("--ecds", required=True)
    b.add_argument("--upstream", action="append", default=[], metavar="CLUSTER=HOST:PORT")
    b.add_argument("--collector", metavar="HOST:PORT")
    b.add_argument("--default-cluster")
    b.add_argument("--no-filter", action="store_true", help="plain Envoy (the benchmark's baseline): no scrub, no Switchyard filter")
    b.add_argument("--fault", action="append", default=[], metavar="CLUSTER=PERCENT[:STATUS]",
                   help="abort PERCENT %% of the requests routed to CLUSTER with STATUS (default 503)")
    f = sub.add_parser("filter")
    f.add_argument("--policy", required=True)
    f.add_argument("--wasm", required=True)
    f.add_argument("--out", required=True)
    a = p.parse_args()
    bootstrap(a) if a.cmd == "bootstrap" else filter_config(a)


if __name__ == "__main__":
    main()
