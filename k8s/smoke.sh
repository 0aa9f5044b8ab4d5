#!/usr/bin/env bash
# Smoke test on a real cluster (not run in CI: none runs here). Applies an overlay, waits for
# every backend and the gateway, sends traffic through the gateway and checks what a user
# relies on: each model answers, mlp's split matches the policy's weights, a client cannot
# pick a version with the internal routing header, and the operator has the policy in force.
#
#   k8s/smoke.sh [OVERLAY]      OVERLAY: kserve-istio (default), kserve-istio-gpu, deployments-envoy,
#                               deployments-gateway-api (GATEWAY_NAMESPACE: where Envoy Gateway runs
#                               the gateway's pods, default envoy-gateway-system)
#
# Needs kubectl pointed at the cluster (KUBECONFIG / current context), curl and python3; the
# cluster needs what the overlay uses (KServe, Istio, KEDA, prometheus-operator CRDs; k8s/README.md)
# and the images pushed (k8s/image/build.sh). The models volume must hold the repository
# (k8s/README.md, "Model repository"). REQUESTS=N (default 400) requests for the split check.
set -euo pipefail
cd "$(dirname "$0")/.."
overlay=${1:-kserve-istio}
ns=switchyard
# Envoy Gateway runs the Gateway's Envoy fleet in its own namespace (EnvoyProxy names it
# switchyard-gateway); the other overlays run the gateway in the namespace.
case "$overlay" in
  *gateway-api) gw_ns=${GATEWAY_NAMESPACE:-envoy-gateway-system} ;;
  *) gw_ns=$ns ;;
esac
requests=${REQUESTS:-400}
port=${LOCAL_PORT:-18080}
dir="k8s/overlays/$overlay"
[ -d "$dir" ] || { echo "smoke: no overlay $dir (have: $(printf '%s ' k8s/overlays/*))" >&2; exit 2; }
for tool in kubectl curl python3; do
  command -v "$tool" >/dev/null || { echo "smoke: needs $tool" >&2; exit 2; }
done
step() { printf '==> %s\n' "$*"; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

step "cluster: $(kubectl config current-context)"
kubectl version >/dev/null || fail "the API server does not answer"
# The custom resources the overlay uses must be served before anything is applied (Switchyard's
# own: kubectl apply -k k8s/crds).
for kind in $(kubectl kustomize "$dir" | awk '/^kind:/ {print $2}' | sort -u); do
  kubectl api-resources --no-headers 2>/dev/null | awk '{print $NF}' | grep -qx "$kind" \
    || fail "the cluster has no $kind (install its operator first; k8s/README.md)"
done

step "apply $dir"
kubectl apply -k "$dir"

step "wait for the backends and the gateway (up to 10 min: images, model load)"
case "$overlay" in
  kserve-*) kubectl -n "$ns" wait --for=condition=Ready inferenceservice --all --timeout=600s ;;
  *) kubectl -n "$ns" wait --for=condition=Available deployment -l app.kubernetes.io/name=switchyard-backend --timeout=600s ;;
esac
kubectl -n "$gw_ns" rollout status deployment/switchyard-gateway --timeout=300s
kubectl -n "$ns" rollout status deployment/switchyard-operator --timeout=300s

step "port-forward svc/switchyard-gateway ($gw_ns) to 127.0.0.1:$port"
kubectl -n "$gw_ns" port-forward svc/switchyard-gateway "$port:80" >/dev/null 2>&1 &
pf=$!
trap 'kill "$pf" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

# Canaries idle at zero replicas until the filter routes to them (KEDA's `routed` trigger):
# the first requests to one get 503s until its pod is ready. Wake every version with weight,
# then measure.
step "wake the versions with weight (KEDA scales canaries from zero; up to 3 min)"
deadline=$((SECONDS + 180))
while :; do
  curl -s -o /dev/null -H 'content-type: application/json' --data @- \
    "http://127.0.0.1:$port/v2/models/mlp/infer" < <(python3 -c 'import json; g=json.load(open("models/golden/mlp-v1.json"))["inputs"][0]; print(json.dumps({"inputs":[{**g,"shape":[1]+g["shape"][1:],"data":g["data"][:len(g["data"])//g["shape"][0]]}]}))') || true
  waiting=$(kubectl -n "$ns" get deploy -l app.kubernetes.io/name=switchyard-backend,switchyard.dev/model=mlp \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.readyReplicas}{"\n"}{end}' | awk -F= '$2 == "" || $2 == 0 {print $1}')
  [ -z "$waiting" ] && break
  [ "$SECONDS" -lt "$deadline" ] || fail "not ready after 3 min: $waiting"
  sleep 1
done

step "traffic: $requests mlp requests, one resnet18 request, through the gateway"
python3 - "$port" "$requests" "$overlay" <<'PY'
import json, math, sys, urllib.request, urllib.error
port, n, overlay = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
policy = json.load(open("envoy/policy.json"))
vh = policy.get("version_header", "x-switchyard-version")
uh = policy.get("upstream_header", "x-switchyard-upstream")

def infer(model, golden, headers=None):
    g = json.load(open(f"models/golden/{golden}.json"))
    inp = g["inputs"][0]
    row = len(inp["data"]) // inp["shape"][0] if isinstance(inp["data"][0], (int, float)) else None
    data = inp["data"][:row] if row else inp["data"][:1]
    body = {"inputs": [{**inp, "shape": [1] + inp["shape"][1:], "data": data}]}
    req = urllib.request.Request(f"{base}/v2/models/{model}/infer", json.dumps(body).encode(),
                                 {"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers.get(vh)

counts = {}
for _ in range(n):
    status, version = infer("mlp", "mlp-v1")
    assert status == 200, status
    counts[version] = counts.get(version, 0) + 1
versions = policy["models"]["mlp"]["versions"]
total_w = sum(v["weight"] for v in versions)
bad = []
for v in versions:
    p = v["weight"] / total_w
    got = counts.get(v["name"], 0)
    sd = math.sqrt(n * p * (1 - p)) or 1
    print(f"    mlp {v['name']}: {got}/{n} (policy {100 * p:.0f}%)")
    if abs(got - n * p) > 5 * sd:
        bad.append(f"mlp {v['name']} got {got} of {n}, policy says {100 * p:.0f}%")
status, version = infer("resnet18", "resnet18-v1")
print(f"    resnet18: {status} from {version}")
# A client naming the least-weighted version's cluster in the internal header does not get
# it more often than the split gives it.
other = min(versions, key=lambda v: v["weight"])
p = other["weight"] / total_w
k = 50
# Under Istio the filter names versions by Istio's cluster (the WasmPlugin's policy).
name = other["cluster"] if overlay.startswith("deployments") else f"outbound|8000||{other['cluster']}.switchyard.svc.cluster.local"
picked = sum(infer("mlp", "mlp-v1", {uh: name})[1] == other["name"] for _ in range(k))
print(f"    client-sent {uh}: {picked}/{k} answered by {other['name']} (policy {100 * p:.0f}%)")
if picked > k * p + 5 * math.sqrt(k * p * (1 - p)) + 1:
    bad.append(f"a client picked {other['name']} with {uh}")
if bad:
    sys.exit("smoke: FAILED: " + "; ".join(bad))
PY

step "operator: the TrafficPolicy is valid and in force"
kubectl -n "$ns" wait --for=condition=Ready trafficpolicy/switchyard-gateway --timeout=120s \
  || fail "TrafficPolicy/switchyard-gateway is not Ready: $(kubectl -n "$ns" get trafficpolicy switchyard-gateway -o jsonpath='{.status.conditions}')"
kubectl -n "$ns" get trafficpolicies,modelrollouts 2>&1 | sed 's/^/    /'
echo "smoke: ok ($overlay)"
