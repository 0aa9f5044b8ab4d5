#!/usr/bin/env python3
"""Offline validation of everything under k8s/: no cluster needed.

Every overlay (k8s/overlays/*) and job (k8s/jobs/*) is rendered with `kubectl kustomize`, then:
  1. each core Kubernetes object validates strictly (unknown fields rejected) against the
     schemas of every version in --versions, with PyPI kubernetes-validate;
  2. each custom resource validates against the project's own closed schema in k8s/schemas
     (a kind without one is an error, not a warning); the PodSpec parts of an
     InferenceService are checked against the Kubernetes PodSpec schema of each version;
  3. the objects are checked against each other and against the backend's flags (`cross`).

`--self-test` breaks rendered objects in the ways these checks exist for and fails unless
every break is caught: a validator that passes everything would pass the suite too.

Run by `cargo test` (deploy/tests/generated.rs); by hand:
  .venv/bin/python k8s/validate.py --policy-bin target/release/switchyard-policy
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry
from referencing.jsonschema import DRAFT202012

K8S = Path(__file__).resolve().parent
# The backend's flags, ports and the probe paths it serves: the contract's export
# (contract/contract.json, written by `switchyard-policy contract` from the Rust definitions).
CONTRACT = json.loads((K8S.parent / "contract" / "contract.json").read_text())
BACKEND = next(p for p in CONTRACT["processes"] if p["binary"] == "switchyard-backend")
READY_PATH = CONTRACT["paths"]["health_ready"]
LIVE_PATH = CONTRACT["paths"]["health_live"]
ADDR_FLAGS = {listener["flag"]: listener["name"] for listener in BACKEND["listeners"]}
SERVE = CONTRACT["backend"]["serve"]
GRACE_FLAG = CONTRACT["backend"]["shutdown_grace_flag"]
GRACE_SECONDS = CONTRACT["backend"]["shutdown_grace_seconds"]
# Where the project's schemas reference the Kubernetes PodSpec (k8s/schemas/README.md).
PODSPEC_URI = "https://kubernetes.io/podspec-v1.json"
IMAGE = "switchyard/switchyard"
# Volumes a job uses from what it is applied next to: the base's model repository, the batch
# job's input and output.
JOB_VOLUMES = {("PersistentVolumeClaim", "switchyard-models"), ("PersistentVolumeClaim", "switchyard-batch")}


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, what: str) -> None:
        self.errors.append(f"{where}: {what}")


def name_of(o: dict) -> str:
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def render(target: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {target} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def targets() -> list[Path]:
    return sorted(p for d in ("overlays", "jobs") for p in (K8S / d).iterdir() if p.is_dir())


# --- 1 and 2: schemas ---------------------------------------------------------------------

def schema_dir(version: str) -> Path:
    return Path(kv.__file__).parent / "kubernetes-json-schema" / f"v{version}.0-local-strict"


def load_own_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted((K8S / "schemas").glob("*.yaml")):
        s = yaml.safe_load(path.read_text())
        props = s.get("properties", {})
        key = (props.get("apiVersion", {}).get("const"), props.get("kind", {}).get("const"))
        if None in key:
            raise SystemExit(f"{path}: a schema must fix apiVersion and kind with const")
        schemas[key] = s
    return schemas


@functools.cache
def own_registry(version: str) -> Registry:
    d = schema_dir(version)
    podspec = json.loads((d / "podspec-v1.json").read_text())
    definitions = json.loads((d / "_definitions.json").read_text())
    # The PodSpec refers to its definitions as /api/_definitions.json, relative to its own URI.
    return Registry().with_resources([
        (PODSPEC_URI, DRAFT202012.create_resource(podspec)),
        (definitions.get("$id", "https://kubernetes.io/api/_definitions.json"), DRAFT202012.create_resource(definitions)),
    ])


def is_core(o: dict) -> bool:
    group = o.get("apiVersion", "").rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


def validate_schemas(objs: list[dict], where: str, versions: list[str], own: dict, rep: Report) -> None:
    for o in objs:
        label = f"{where} {name_of(o)}"
        if is_core(o):
            for v in versions:
                try:
                    kubernetes_validate.validate(o, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    rep.error(label, f"Kubernetes {v}: {path}: {e.message}")
                except kv.SchemaNotFoundError:
                    rep.error(label, f"Kubernetes {v} has no {o.get('apiVersion')} {o.get('kind')}")
            continue
        schema = own.get((o.get("apiVersion"), o.get("kind")))
        if schema is None:
            rep.error(label, f"no schema in k8s/schemas for {o.get('apiVersion')} {o.get('kind')}: write one")
            continue
        for v in versions:
            validator = jsonschema.Draft202012Validator(schema, registry=own_registry(v))
            for e in sorted(validator.iter_errors(o), key=lambda e: list(map(str, e.path))):
                path = ".".join(str(p) for p in e.path)
                rep.error(label, f"k8s/schemas{' (PodSpec of Kubernetes ' + v + ')' if o['kind'] == 'InferenceService' else ''}: "
                                 f"{path}: {e.message}")


# --- 3: across objects ----------------------------------------------------------------------

def matches(selector: dict, labels: dict) -> bool:
    """A label selector (a plain map, or matchLabels/matchExpressions) against a label set; an
    empty selector matches nothing here (for a Service it would mean "no pods")."""
    if "matchLabels" in selector or "matchExpressions" in selector:
        ml, exprs = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    else:
        ml, exprs = selector, []
    if not ml and not exprs:
        return False
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for e in exprs:
        val, op, values = labels.get(e["key"]), e["operator"], e.get("values", [])
        if (op == "In" and val not in values) or (op == "NotIn" and val in values) or \
                (op == "Exists" and val is None) or (op == "DoesNotExist" and val is not None):
            return False
    return True


def pod_templates(objs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(owner, pod labels, pod spec) of everything that makes pods, as the controllers label them."""
    pods = []
    for o in objs:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = o["spec"]["template"]
            pods.append((name_of(o), t.get("metadata", {}).get("labels", {}), t["spec"]))
        elif kind == "InferenceService":
            p = o["spec"]["predictor"]
            # KServe (raw deployment) labels predictor pods with the ISVC's labels, the
            # predictor's own and these two.
            labels = {**o["metadata"].get("labels", {}), **p.get("labels", {}),
                      "serving.kserve.io/inferenceservice": name, "component": "predictor"}
            spec = {k: v for k, v in p.items() if k not in ISVC_COMPONENT_FIELDS}
            pods.append((name_of(o), labels, spec))
    return pods


# InferenceService predictor fields that are KServe's own, not the PodSpec's.
ISVC_COMPONENT_FIELDS = {
    "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "containerConcurrency",
    "timeout", "canaryTrafficPercent", "labels", "annotations", "deploymentStrategy", "logger", "batcher",
    "autoScaling", "model", "workerSpec",
}


def workload_names(objs: list[dict]) -> set[tuple[str, str]]:
    """(kind, name) of what a scaler may target: KServe raw mode makes Deployment NAME-predictor."""
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for o in objs:
        if o["kind"] == "InferenceService":
            names.add(("Deployment", o["metadata"]["name"] + "-predictor"))
    return names


def container_ports(spec: dict) -> dict[str, int]:
    ports = {}
    for c in spec.get("containers", []):
        for p in c.get("ports", []):
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
            ports[str(p["containerPort"])] = p["containerPort"]
    return ports


def flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def check_backend_pod(owner: str, spec: dict, rep: Report) -> None:
    for c in spec.get("containers", []):
        argv = c.get("command", []) + c.get("args", [])
        if not argv or Path(argv[0]).name != BACKEND["binary"] or SERVE not in argv:
            continue
        where = f"{owner} container {c['name']}"
        named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for fl, port_name in ADDR_FLAGS.items():
            addr = flag(argv, fl)
            if addr is None:
                rep.error(where, f"{fl} not given: the backend would listen on loopback only")
                continue
            host, _, port = addr.rpartition(":")
            if host not in ("0.0.0.0", "[::]"):
                rep.error(where, f"{fl} {addr}: not reachable from outside the pod")
            if named.get(port_name) != int(port):
                rep.error(where, f"{fl} {addr} but containerPort '{port_name}' is {named.get(port_name)}")
        ports = container_ports(spec)
        for probe, path in (("readinessProbe", READY_PATH), ("livenessProbe", LIVE_PATH), ("startupProbe", None)):
            get = c.get(probe, {}).get("httpGet")
            if get is None:
                if probe != "startupProbe":
                    rep.error(where, f"no {probe}")
                continue
            if path and get.get("path") != path:
                rep.error(where, f"{probe} path {get.get('path')} is not the backend's {path}")
            if get.get("path") not in (READY_PATH, LIVE_PATH):
                rep.error(where, f"{probe} path {get.get('path')}: the backend serves {READY_PATH} and {LIVE_PATH}")
            port = ports.get(str(get.get("port")))
            if port is None or port != named.get("http"):
                rep.error(where, f"{probe} port {get.get('port')} is not the HTTP port {named.get('http')}")
        grace = int(flag(argv, GRACE_FLAG) or GRACE_SECONDS)
        stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        term = spec.get("terminationGracePeriodSeconds", 30)
        if term <= grace + stop:
            rep.error(where, f"terminationGracePeriodSeconds {term} leaves no time: preStop {stop} s + "
                             f"--shutdown-grace-seconds {grace} s must end before it")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits"):
            rep.error(where, "resources need both requests and limits")


def image_tags(objs: list[dict]) -> set[str]:
    tags = set()
    for o in objs:
        for _, _, spec in pod_templates([o]):
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                image = c.get("image", "")
                if image.split(":")[0] == IMAGE:
                    tags.add(image.partition(":")[2] or "latest")
        if o["kind"] == "WasmPlugin" and o["spec"]["url"].startswith("oci://"):
            tags.add(o["spec"]["url"].rpartition(":")[2])
    return tags


def check_policy(pc: dict, where: str, policy_bin: str, rep: Report) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(pc, f)
    out = subprocess.run([policy_bin, "check", f.name], capture_output=True, text=True)
    Path(f.name).unlink()
    if out.returncode != 0:
        rep.error(where, "switchyard-policy check refuses the policy: " + "; ".join((out.stderr or out.stdout).strip().splitlines()))


def cross(objs: list[dict], where: str, policy_bin: str, rep: Report) -> None:
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    pods = pod_templates(objs)
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    if len(namespaces) != 1:
        rep.error(where, f"objects spread over namespaces {sorted(map(str, namespaces))}")

    for s in services.values():
        sel = s["spec"].get("selector", {})
        hit = [(owner, spec) for owner, labels, spec in pods if matches(sel, labels)]
        if not hit:
            rep.error(f"{where} {name_of(s)}", f"selects no pod template ({sel})")
        for p in s["spec"].get("ports", []):
            target = str(p.get("targetPort", p["port"]))
            for owner, spec in hit:
                if target not in container_ports(spec):
                    rep.error(f"{where} {name_of(s)}", f"targetPort {target} is no container port of {owner}")

    for o in objs:
        label = f"{where} {name_of(o)}"
        kind = o["kind"]
        if kind == "PodDisruptionBudget" and not any(matches(o["spec"]["selector"], l) for _, l, _ in pods):
            rep.error(label, "selects no pod template")
        if kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            ref = o["spec"]["scaleTargetRef"]
            if (ref.get("kind", "Deployment"), ref["name"]) not in workload_names(objs):
                rep.error(label, f"targets {ref.get('kind', 'Deployment')}/{ref['name']}, which does not exist")
            isvc = by.get(("InferenceService", ref["name"].removesuffix("-predictor")))
            floor = o["spec"].get("minReplicaCount" if kind == "ScaledObject" else "minReplicas", 1)
            if isvc and isvc["spec"]["predictor"].get("minReplicas", 1) != floor:
                rep.error(label, f"scales down to {floor} but the InferenceService's minReplicas is "
                                 f"{isvc['spec']['predictor'].get('minReplicas', 1)}: KServe and the scaler would fight")
        if kind == "WasmPlugin":
            check_policy(o["spec"].get("pluginConfig", {}), label, policy_bin, rep)
        if kind in ("WasmPlugin", "EnvoyFilter", "Gateway"):
            sel = (o["spec"].get("selector") or o["spec"].get("workloadSelector") or {})
            sel = sel.get("matchLabels", sel.get("labels", sel))
            if not any(matches({"matchLabels": sel}, l) for _, l, _ in pods):
                rep.error(label, f"its selector {sel} matches no gateway pod")
        if kind == "VirtualService":
            check_routes_match_policy(o, objs, label, rep)
            for g in o["spec"].get("gateways", []):
                if ("Gateway", g) not in by:
                    rep.error(label, f"gateway {g} does not exist")
            for route in o["spec"].get("http", []):
                dests = [d["destination"] for d in route.get("route", [])]
                if "mirror" in route:
                    dests.append(route["mirror"])
                for d in dests:
                    check_service_port(services, d["host"], d.get("port", {}).get("number"), label, rep)
        if kind in ("ServiceMonitor", "PodMonitor"):
            sel = o["spec"]["selector"]
            eps = o["spec"].get("endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints", [])
            if kind == "ServiceMonitor":
                hit = [s for s in services.values() if matches(sel, s["metadata"].get("labels", {}))]
                names = [{p.get("name") for p in s["spec"]["ports"]} for s in hit]
            else:
                hit = [spec for _, l, spec in pods if matches(sel, l)]
                names = [set(container_ports(spec)) for spec in hit]
            if not hit:
                rep.error(label, "selects nothing")
            for e in eps:
                if any(e.get("port") not in n for n in names):
                    rep.error(label, f"port {e.get('port')} is not named on everything it selects")
        if kind == "ConfigMap" and o["metadata"]["name"] == "switchyard-gateway-bootstrap":
            check_bootstrap(o, services, label, rep)
        if kind == "ConfigMap" and o["metadata"]["name"] == "switchyard-gateway-filter":
            for text in o.get("data", {}).values():
                for r in yaml.safe_load(text).get("resources", []):
                    cfg = r.get("typed_config", {}).get("config", {}).get("configuration", {}).get("value")
                    if cfg is not None:
                        check_policy(json.loads(cfg), label, policy_bin, rep)

    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            notes = o["spec"]["template"].get("metadata", {}).get("annotations", {})
            cm = notes.get("sidecar.istio.io/bootstrapOverride")
            if cm and ("ConfigMap", cm) not in by:
                rep.error(f"{where} {name_of(o)}", f"bootstrapOverride ConfigMap {cm} does not exist")
    check_rbac(objs, by, where, rep)
    for owner, _, spec in pods:
        check_backend_pod(f"{where} {owner}", spec, rep)
        for v in spec.get("volumes", []):
            ref = (("ConfigMap", v["configMap"]["name"]) if "configMap" in v else
                   ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) if "persistentVolumeClaim" in v
                   else None)
            # Jobs are applied next to an overlay (and the merge next to the batch job) and use
            # their volumes.
            if ref and ref not in by and not (owner.startswith("Job/") and ref in JOB_VOLUMES):
                rep.error(f"{where} {owner}", f"volume {v['name']}: {ref[0]} {ref[1]} does not exist")
    tags = image_tags(objs)
    if len(tags) > 1:
        rep.error(where, f"Switchyard images and the filter's OCI image disagree on the tag: {sorted(tags)}")


# What carries the policy, per controller setting: (kind, API group, resource).
CARRIERS = {
    "SWITCHYARD_WASM_PLUGIN": ("WasmPlugin", "extensions.istio.io", "wasmplugins"),
    "SWITCHYARD_CONFIG_MAP": ("ConfigMap", "", "configmaps"),
}


def check_rbac(objs: list[dict], by: dict, where: str, rep: Report) -> None:
    """Bindings bind what exists; pods run as accounts that exist; the rollout controller may
    get and patch exactly the one object it is told carries the policy, nothing more."""
    for o in objs:
        label = f"{where} {name_of(o)}"
        if o["kind"] == "RoleBinding":
            ref = o["roleRef"]
            if (ref["kind"], ref["name"]) not in by:
                rep.error(label, f"binds {ref['kind']} {ref['name']}, which does not exist")
            for sub in o.get("subjects", []):
                if sub["kind"] == "ServiceAccount" and ("ServiceAccount", sub["name"]) not in by:
                    rep.error(label, f"binds ServiceAccount {sub['name']}, which does not exist")
    for owner, _, spec in pod_templates(objs):
        sa = spec.get("serviceAccountName")
        if sa and ("ServiceAccount", sa) not in by:
            rep.error(f"{where} {owner}", f"runs as ServiceAccount {sa}, which does not exist")
    controller = by.get(("Deployment", "switchyard-rollout"))
    if controller is None:
        return
    label = f"{where} {name_of(controller)}"
    spec = controller["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for c in spec["containers"] for e in c.get("env", [])}
    carriers = [(k, env[k]) for k in CARRIERS if env.get(k)]
    if len(carriers) != 1:
        rep.error(label, f"needs exactly one of {', '.join(CARRIERS)}; has {carriers or 'none'}")
        return
    var, name = carriers[0]
    kind, group, resource = CARRIERS[var]
    if (kind, name) not in by:
        rep.error(label, f"{var} names {kind} {name}, which does not exist")
    sa = spec.get("serviceAccountName")
    roles = [by.get((b["roleRef"]["kind"], b["roleRef"]["name"])) for b in objs if b["kind"] == "RoleBinding"
             and any(s.get("kind") == "ServiceAccount" and s["name"] == sa for s in b.get("subjects", []))]
    if not any(roles):
        rep.error(label, f"ServiceAccount {sa} has no Role: it could not change traffic")
    if any(o["kind"] == "ClusterRoleBinding" and any(s.get("name") == sa for s in o.get("subjects", [])) for o in objs):
        rep.error(label, f"ServiceAccount {sa} is bound cluster-wide: it may touch only its own object")
    for role in filter(None, roles):
        for rule in role.get("rules", []):
            allowed = (rule.get("apiGroups") == [group] and rule.get("resources") == [resource]
                       and rule.get("resourceNames") == [name] and set(rule.get("verbs", [])) <= {"get", "patch"})
            if not allowed:
                rep.error(f"{where} {name_of(role)}", f"grants more than get/patch on {kind} {name}: {rule}")


def check_routes_match_policy(vs: dict, objs: list[dict], label: str, rep: Report) -> None:
    """The filter routes by setting its upstream header to a version's cluster as the WasmPlugin's
    policy names it: every such value needs a route, and every header route such a value."""
    plugins = [o for o in objs if o["kind"] == "WasmPlugin"]
    if not plugins:
        return
    pc = plugins[0]["spec"].get("pluginConfig", {})
    header = pc.get("upstream_header", "x-switchyard-upstream")
    clusters = {v["cluster"] for m in pc.get("models", {}).values() for v in m.get("versions", [])}
    routed = set()
    for route in vs["spec"].get("http", []):
        for m in route.get("match", []):
            value = m.get("headers", {}).get(header, {}).get("exact")
            if value is not None:
                routed.add(value)
                if value not in clusters:
                    rep.error(label, f"route {route.get('name')} matches {header}: {value}, which the filter never sets")
    for c in sorted(clusters - routed):
        rep.error(label, f"no route for {header}: {c} (a version of the WasmPlugin's policy)")
    # With the filter failed open, each model's requests go to its own stable version.
    for model, m in pc.get("models", {}).items():
        versions = m.get("versions", [])
        if not versions:
            continue
        stable = versions[0]["cluster"].split("|")[-1].split(".")[0]
        prefix = f"/v2/models/{model}/"
        if not any(any(mt.get("uri", {}).get("prefix") == prefix for mt in r.get("match", []))
                   and [d["destination"]["host"] for d in r.get("route", [])] == [stable]
                   for r in vs["spec"].get("http", [])):
            rep.error(label, f"no route sends {prefix} to {stable} when the filter fails open")


def check_service_port(services: dict, host: str, port: int | None, label: str, rep: Report) -> None:
    name = host.split(".")[0]
    s = services.get(name)
    if s is None:
        rep.error(label, f"routes to {host}: no such Service")
    elif port is not None and port not in [p["port"] for p in s["spec"]["ports"]]:
        rep.error(label, f"routes to {host}:{port}: the Service has no port {port}")


def check_bootstrap(cm: dict, services: dict, label: str, rep: Report) -> None:
    boot = json.loads(cm["data"]["envoy.json"])
    for c in boot.get("static_resources", {}).get("clusters", []):
        for ep in c.get("load_assignment", {}).get("endpoints", []):
            for lb in ep.get("lb_endpoints", []):
                sa = lb["endpoint"]["address"]["socket_address"]
                if re.match(r"^[\d.]+$", sa["address"]):
                    rep.error(label, f"cluster {c['name']} points at an IP address {sa['address']}, not a Service")
                    continue
                if c.get("type") not in ("STRICT_DNS", "LOGICAL_DNS"):
                    rep.error(label, f"cluster {c['name']} names a host but is {c.get('type', 'STATIC')}, not DNS")
                check_service_port(services, sa["address"], sa["port_value"], f"{label} cluster {c['name']}", rep)


def validate_all(versions: list[str], policy_bin: str, only: list[Path] | None = None,
                 mutate=None) -> list[str]:
    rep = Report()
    own = load_own_schemas()
    for t in only or targets():
        objs = render(t)
        if mutate:
            mutate(objs)
        where = str(t.relative_to(K8S))
        validate_schemas(objs, where, versions, own, rep)
        cross(objs, where, policy_bin, rep)
    return rep.errors


# --- self-test -------------------------------------------------------------------------------

def find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def backend_container(objs: list[dict]) -> dict:
    for _, _, spec in pod_templates(objs):
        for c in spec["containers"]:
            if "serve" in c.get("args", []):
                return c
    raise LookupError("no backend container")


def isvc_container(objs: list[dict]) -> dict:
    return find(objs, "InferenceService")["spec"]["predictor"]["containers"][0]


BREAKS = {
    "kserve-istio": [
        ("an unknown field in an InferenceService",
         lambda o: find(o, "InferenceService")["spec"]["predictor"].__setitem__("minReplica", 1), "minReplica"),
        ("an unknown field in the predictor's container (PodSpec part)",
         lambda o: isvc_container(o).__setitem__("imagePullPolice", "Always"), "imagePullPolice"),
        ("a WasmPlugin that fails closed", lambda o: find(o, "WasmPlugin")["spec"].__setitem__("failStrategy", "FAIL_SHUT"),
         "FAIL_SHUT"),
        ("a policy switchyard-policy check refuses",
         lambda o: find(o, "WasmPlugin")["spec"]["pluginConfig"]["models"]["mlp"]["versions"][0].__setitem__("cluster", ""),
         "switchyard-policy check refuses"),
        ("a Service selecting no pods",
         lambda o: find(o, "Service", "mlp-v1")["spec"]["selector"].__setitem__("switchyard.dev/backend", "mlp-v9"),
         "selects no pod template"),
        ("a ScaledObject targeting nothing",
         lambda o: find(o, "ScaledObject")["spec"]["scaleTargetRef"].__setitem__("name", "nope-predictor"), "does not exist"),
        ("an InferenceService floor that disagrees with its ScaledObject",
         lambda o: find(o, "InferenceService", "mlp-v2")["spec"]["predictor"].__setitem__("minReplicas", 1),
         "KServe and the scaler would fight"),
        ("a readiness probe on the wrong path",
         lambda o: isvc_container(o)["readinessProbe"]["httpGet"].__setitem__("path", "/ready"), "not the backend's"),
        ("an HTTP port that disagrees with --http-addr",
         lambda o: isvc_container(o)["ports"][0].__setitem__("containerPort", 9000), "--http-addr"),
        ("a grace period shorter than the drain",
         lambda o: find(o, "InferenceService")["spec"]["predictor"].__setitem__("terminationGracePeriodSeconds", 30),
         "leaves no time"),
        ("an image tag that disagrees", lambda o: isvc_container(o).__setitem__("image", f"{IMAGE}:0.0.9"), "disagree on the tag"),
        ("a VirtualService routing to a missing Service",
         lambda o: find(o, "VirtualService")["spec"]["http"][0]["route"][0]["destination"].__setitem__("host", "mlp-v7"),
         "no such Service"),
        ("an unknown field in a core object (strict Kubernetes schema)",
         lambda o: find(o, "Service", "mlp-v1")["spec"].__setitem__("selectr", {}), "selectr"),
        ("a route on a header value the filter never sets",
         lambda o: find(o, "VirtualService")["spec"]["http"][1]["match"][0]["headers"]["x-switchyard-upstream"].__setitem__(
             "exact", "mlp-v1"), "which the filter never sets"),
        ("a fail-open route that sends a model to another model's version",
         lambda o: next(r for r in find(o, "VirtualService")["spec"]["http"] if r["name"] == "resnet18-unrouted")[
             "route"][0]["destination"].__setitem__("host", "mlp-v1"), "when the filter fails open"),
        ("a missing bootstrap override (the filter's metric labels)",
         lambda o: o.remove(find(o, "ConfigMap", "switchyard-gateway-bootstrap-override")), "bootstrapOverride ConfigMap"),
        ("a RoleBinding to a ServiceAccount that does not exist",
         lambda o: find(o, "RoleBinding", "switchyard-rollout")["subjects"][0].__setitem__("name", "nobody"),
         "ServiceAccount nobody, which does not exist"),
        ("a WasmPlugin selecting no gateway pods",
         lambda o: find(o, "WasmPlugin")["spec"]["selector"]["matchLabels"].__setitem__("istio", "ingressgateway"),
         "matches no gateway pod"),
        ("a ServiceMonitor on a port name no Service has",
         lambda o: find(o, "ServiceMonitor", "switchyard-backend")["spec"]["endpoints"][0].__setitem__("port", "metrics"),
         "is not named"),
    ],
    "deployments-envoy": [
        ("a controller Role that grants more than its own object",
         lambda o: find(o, "Role", "switchyard-rollout")["rules"][0].__setitem__("verbs", ["get", "patch", "delete"]),
         "grants more than get/patch"),
        ("a controller Role on every ConfigMap",
         lambda o: find(o, "Role", "switchyard-rollout")["rules"][0].pop("resourceNames"), "grants more than get/patch"),
        ("a controller told to patch an object that does not exist",
         lambda o: find(o, "Deployment", "switchyard-rollout")["spec"]["template"]["spec"]["containers"][0]["env"].append(
             {"name": "SWITCHYARD_WASM_PLUGIN", "value": "x"}), "needs exactly one of"),
        ("an HPA targeting nothing",
         lambda o: find(o, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].__setitem__("name", "nope"), "does not exist"),
        ("a bootstrap cluster on a Service port that does not exist",
         lambda o: find(o, "ConfigMap", "switchyard-gateway-bootstrap")["data"].__setitem__(
             "envoy.json", find(o, "ConfigMap", "switchyard-gateway-bootstrap")["data"]["envoy.json"].replace(
                 '"port_value": 8000', '"port_value": 8080', 1)), "has no port 8080"),
        ("an ECDS file whose policy switchyard-policy check refuses",
         lambda o: find(o, "ConfigMap", "switchyard-gateway-filter")["data"].__setitem__(
             "filter.yaml", find(o, "ConfigMap", "switchyard-gateway-filter")["data"]["filter.yaml"].replace(
                 '\\"weight\\": 100', '\\"weight\\": -1', 1)), "switchyard-policy check refuses"),
        ("a volume from a ConfigMap that does not exist",
         lambda o: find(o, "Deployment", "switchyard-gateway")["spec"]["template"]["spec"]["volumes"][0]["configMap"].__setitem__(
             "name", "missing"), "does not exist"),
    ],
}


def self_test(versions: list[str], policy_bin: str) -> int:
    failed = 0
    for target, breaks in BREAKS.items():
        path = K8S / "overlays" / target
        clean = validate_all(versions, policy_bin, [path])
        if clean:
            print(f"FAIL {target} does not validate to begin with:\n  " + "\n  ".join(clean))
            return 1
        for what, breaker, needle in breaks:
            errors = validate_all(versions[-1:], policy_bin, [path], lambda objs: breaker(objs))
            caught = [e for e in errors if needle in e]
            print(f"{'ok  ' if caught else 'FAIL'} {target}: {what}" + (f" -> {caught[0]}" if caught else
                  f" was not caught (errors: {errors or 'none'})"))
            failed += not caught
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", default="1.31,1.33", help="Kubernetes versions to validate against")
    ap.add_argument("--policy-bin", default="target/release/switchyard-policy", help="switchyard-policy binary")
    ap.add_argument("--self-test", action="store_true", help="check that broken objects are caught")
    a = ap.parse_args()
    versions = a.versions.split(",")
    if a.self_test:
        return self_test(versions, a.policy_bin)
    errors = validate_all(versions, a.policy_bin)
    for e in errors:
        print(f"ERROR {e}")
    n = len(targets())
    print(f"{'FAILED' if errors else 'ok'}: {n} targets ({', '.join(str(t.relative_to(K8S)) for t in targets())}), "
          f"Kubernetes {', '.join(versions)}, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
