#!/usr/bin/env python3
"""Drives the backend with NVIDIA's unmodified `tritonclient[http]`, the way real users do.

Usage: tritonclient_check.py HOST:PORT GOLDEN_DIR
Exits non-zero (with the reason) on the first mismatch.
"""
import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok   {what}")


def main():
    url, golden_dir = sys.argv[1], Path(sys.argv[2])
    client = httpclient.InferenceServerClient(url=url)
    check(client.is_server_live(), "is_server_live")
    check(client.is_server_ready(), "is_server_ready")
    meta = client.get_server_metadata()
    check(meta["name"] == "switchyard" and "binary_tensor_data" in meta["extensions"], "get_server_metadata")

    for model, version in [("mlp", "v1"), ("mlp", "v2"), ("resnet18", "v1")]:
        g = json.loads((golden_dir / f"{model}-{version}.json").read_text())
        gi, go = g["inputs"][0], g["outputs"][0]
        md = client.get_model_metadata(model, version)
        names_match = md["inputs"][0]["name"] == gi["name"] and md["outputs"][0]["name"] == go["name"]
        check(names_match, f"get_model_metadata {model}:{version}")
        check(client.is_model_ready(model, version), f"is_model_ready {model}:{version}")
        x = np.asarray(gi["data"], dtype=np.float32).reshape(gi["shape"])
        want = np.asarray(go["data"], dtype=np.float32).reshape(go["shape"])
        for binary in (True, False):
            inp = httpclient.InferInput(gi["name"], list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = httpclient.InferRequestedOutput(go["name"], binary_data=binary)
            res = client.infer(model, [inp], model_version=version, outputs=[out], request_id="tc-1")
            got = res.as_numpy(go["name"])
            shape = got.shape if got is not None else None
            check(shape == want.shape, f"infer {model}:{version} binary={binary} shape {shape}")
            err = float(np.max(np.abs(got - want)))
            check(err < 1e-4, f"infer {model}:{version} binary={binary} matches golden (max abs err {err:.2e})")
            check(res.get_response()["id"] == "tc-1", "request id echoed")

    try:
        client.infer("no-such-model", [httpclient.InferInput("x", [1], "FP32")])
        check(False, "unknown model raises")
    except InferenceServerException as e:
        check("not found" in str(e), f"unknown model raises: {e}")
    print("tritonclient: all checks passed")


if __name__ == "__main__":
    main()
