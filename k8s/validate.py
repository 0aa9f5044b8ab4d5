#!/usr/bin/env python3
"""Offline schema validation of everything under k8s/: no cluster needed.

Every overlay (k8s/overlays/*), job (k8s/jobs/*), the CRDs (k8s/crds) and the examples
(k8s/examples) are rendered with `kubectl kustomize`, then:
  1. each core Kubernetes object validates strictly (unknown fields rejected) against the
     schemas of every version in --versions, with PyPI kubernetes-validate;
  2. each custom resource validates against the project's own closed schema in k8s/schemas, or
     for Switchyard's own kinds against the CRD's openAPIV3Schema in k8s/crds, closed the way
     the API server's strict field validation closes it (a kind without one is an error, not a
     warning); the PodSpec parts of an
     InferenceService are checked against the Kubernetes PodSpec schema of each version.

Whether the objects agree with each other and with the backend's flags, ports and health paths
is checked in Rust, by deploy/tests/k8s_objects.rs.

`--self-test` breaks rendered objects in the ways these schemas exist for and fails unless
every break is caught: a validator that passes everything would pass the suite too.

Run by `cargo test` (deploy/tests/generated.rs); by hand:
  .venv/bin/python k8s/validate.py [--versions 1.31,1.33] [--self-test]
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry
from referencing.jsonschema import DRAFT202012

K8S = Path(__file__).resolve().parent
# Where the project's schemas reference the Kubernetes PodSpec (k8s/schemas/README.md).
PODSPEC_URI = "https://kubernetes.io/podspec-v1.json"


def name_of(o: dict) -> str:
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def render(target: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {target} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def targets() -> list[Path]:
    found = sorted(p for d in ("overlays", "jobs") for p in (K8S / d).iterdir() if p.is_dir())
    return found + [K8S / "crds", K8S / "examples"]


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
    for path in sorted((K8S / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = closed(v["schema"]["openAPIV3Schema"])
            schema["properties"]["apiVersion"] = {"const": f"{group}/{v['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                               "labels": {"type": "object"}, "annotations": {"type": "object"}}}
            schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
            schemas[(f"{group}/{v['name']}", kind)] = schema
    return schemas


def closed(s: dict) -> dict:
    """An openAPIV3Schema as JSON Schema, closed as the API server closes it: an object's
    unknown fields are refused unless `x-kubernetes-preserve-unknown-fields`; `nullable`
    admits null."""
    s = {k: (closed(v) if isinstance(v, dict) and k in ("items", "additionalProperties") else v)
         for k, v in s.items()}
    if "properties" in s:
        s["properties"] = {k: closed(v) for k, v in s["properties"].items()}
        if not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if s.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    return s


@functools.cache
def own_registry(version: str) -> Registry:
    d = schema_dir(version)
    podspec = json.loads((d / "podspec-v1.json").read_text())
    definitions = json.loads((d / "_definitions.json").read_text())
    # The PodSpec refers to its definitions as /api/_definitions.json, relative to its own URI.
    definitions_uri = definitions.get("$id", "https://kubernetes.io/api/_definitions.json")
    return Registry().with_resources([
        (PODSPEC_URI, DRAFT202012.create_resource(podspec)),
        (definitions_uri, DRAFT202012.create_resource(definitions)),
    ])


# Groups under .k8s.io that are custom resources, not served by every API server (Gateway API
# is installed as CRDs): validated against k8s/schemas like any other.
NOT_CORE = {"gateway.networking.k8s.io"}


def is_core(o: dict) -> bool:
    group = o.get("apiVersion", "").rpartition("/")[0]
    if group in NOT_CORE:
        return False
    return group == "" or "." not in group or group.endswith(".k8s.io")


def validate(objs: list[dict], where: str, versions: list[str], own: dict) -> list[str]:
    errors = []
    for o in objs:
        label = f"{where} {name_of(o)}"
        if is_core(o):
            for v in versions:
                try:
                    kubernetes_validate.validate(o, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    errors.append(f"{label}: Kubernetes {v}: {path}: {e.message}")
                except kv.SchemaNotFoundError:
                    errors.append(f"{label}: Kubernetes {v} has no {o.get('apiVersion')} {o.get('kind')}")
            continue
        schema = own.get((o.get("apiVersion"), o.get("kind")))
        if schema is None:
            errors.append(f"{label}: no schema in k8s/schemas for {o.get('apiVersion')} {o.get('kind')}: write one")
            continue
        for v in versions:
            source = f"k8s/schemas (PodSpec of Kubernetes {v})" if o["kind"] == "InferenceService" else "k8s/schemas"
            validator = jsonschema.Draft202012Validator(schema, registry=own_registry(v))
            for e in sorted(validator.iter_errors(o), key=lambda e: list(map(str, e.path))):
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{label}: {source}: {path}: {e.message}")
    return errors


def validate_all(versions: list[str], only: list[Path] | None = None,
                 mutate: Callable[[list[dict]], object] | None = None) -> list[str]:
    own = load_own_schemas()
    errors = []
    for t in only or targets():
        objs = render(t)
        if mutate:
            mutate(objs)
        errors += validate(objs, str(t.relative_to(K8S)), versions, own)
    return errors


# --- self-test -------------------------------------------------------------------------------

def find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def isvc_container(objs: list[dict]) -> dict:
    return find(objs, "InferenceService")["spec"]["predictor"]["containers"][0]


# (what, how, what the report must then say)
BREAKS: dict[str, list[tuple[str, Callable[[list[dict]], object], str]]] = {
    "kserve-istio": [
        ("an unknown field in an InferenceService",
         lambda o: find(o, "InferenceService")["spec"]["predictor"].__setitem__("minReplica", 1), "minReplica"),
        ("an unknown field in the predictor's container (PodSpec part)",
         lambda o: isvc_container(o).__setitem__("imagePullPolice", "Always"), "imagePullPolice"),
        ("a WasmPlugin that fails closed",
         lambda o: find(o, "WasmPlugin")["spec"].__setitem__("failStrategy", "FAIL_SHUT"), "FAIL_SHUT"),
        ("an unknown field in a core object (strict Kubernetes schema)",
         lambda o: find(o, "Service", "mlp-v1")["spec"].__setitem__("selectr", {}), "selectr"),
        ("a TrafficPolicy with an unknown carrier field (its CRD's schema)",
         lambda o: find(o, "TrafficPolicy")["spec"]["carrier"].__setitem__("wasmPlugins", {}), "wasmPlugins"),
        ("a PeerAuthentication mode Istio does not have",
         lambda o: find(o, "PeerAuthentication", "switchyard")["spec"]["mtls"].__setitem__("mode", "STRICTER"),
         "STRICTER"),
        ("port-level mutual TLS without a selector (Istio's CRD refuses it)",
         lambda o: find(o, "PeerAuthentication", "switchyard-backend")["spec"].pop("selector"), "selector"),
        ("an AuthorizationPolicy port that is a number, not a string",
         lambda o: find(o, "AuthorizationPolicy", "switchyard-backend")["spec"]["rules"][0]["to"][0]["operation"]
         .__setitem__("ports", [8000]), "8000"),
    ],
    "deployments-gateway-api": [
        ("an HTTPRoute path match type Gateway API does not have",
         lambda o: find(o, "HTTPRoute", "switchyard-mlp")["spec"]["rules"][0]["matches"][0]["path"]
         .__setitem__("type", "Prefix"), "Prefix"),
        ("an EnvoyExtensionPolicy wasm code of type Image without its image",
         lambda o: find(o, "EnvoyExtensionPolicy")["spec"]["wasm"][0]["code"].pop("image"), "image"),
        ("a ClientTrafficPolicy buffer limit that is no quantity",
         lambda o: find(o, "ClientTrafficPolicy")["spec"]["connection"].__setitem__("bufferLimit", "1 MiB"), "1 MiB"),
        ("a NetworkPolicy peer with a misspelt selector (strict Kubernetes schema)",
         lambda o: find(o, "NetworkPolicy", "switchyard-backend")["spec"]["ingress"][0]["from"][0]
         .__setitem__("podSelectr", {}), "podSelectr"),
    ],
    "examples": [
        ("a ModelRollout step weight over 100",
         lambda o: find(o, "ModelRollout")["spec"]["steps"][0].__setitem__("weight", 150), "150"),
        ("a ModelRollout with a snake_case field",
         lambda o: find(o, "ModelRollout")["spec"]["steps"][0].__setitem__("min_duration", "1m"), "min_duration"),
        ("a ModelRollout without its TrafficPolicy",
         lambda o: find(o, "ModelRollout")["spec"].pop("trafficPolicy"), "trafficPolicy"),
    ],
}


def self_test(versions: list[str]) -> int:
    failed = 0
    for target, breaks in BREAKS.items():
        path = K8S / "overlays" / target if (K8S / "overlays" / target).is_dir() else K8S / target
        clean = validate_all(versions, [path])
        if clean:
            print(f"FAIL {target} does not validate to begin with:\n  " + "\n  ".join(clean))
            return 1
        for what, breaker, needle in breaks:
            errors = validate_all(versions[-1:], [path], breaker)
            caught = [e for e in errors if needle in e]
            outcome = f" -> {caught[0]}" if caught else f" was not caught (errors: {errors or 'none'})"
            print(f"{'ok  ' if caught else 'FAIL'} {target}: {what}{outcome}")
            failed += not caught
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", default="1.31,1.33", help="Kubernetes versions to validate against")
    ap.add_argument("--self-test", action="store_true", help="check that broken objects are caught")
    a = ap.parse_args()
    versions = a.versions.split(",")
    if a.self_test:
        return self_test(versions)
    errors = validate_all(versions)
    for e in errors:
        print(f"ERROR {e}")
    names = ", ".join(str(t.relative_to(K8S)) for t in targets())
    print(f"{'FAILED' if errors else 'ok'}: {len(targets())} targets ({names}), "
          f"Kubernetes {', '.join(versions)}, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
