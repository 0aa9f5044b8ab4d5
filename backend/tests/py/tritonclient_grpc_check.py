#!/usr/bin/env python3
"""Drives the backend's gRPC listener with NVIDIA's unmodified `tritonclient[grpc]`.

Usage: tritonclient_grpc_check.py HOST:PORT GOLDEN_DIR [DESCRIPTOR_SET]
With DESCRIPTOR_SET (protoc --descriptor_set_out of oip/proto/inference.proto), also checks
that every field of our messages has the name, number, type and label of Triton's own proto:
the wire compatibility the client relies on.
Exits non-zero (with the reason) on the first mismatch.
"""
import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok   {what}")


def same_wire_format(descriptor_set):
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_set).read_bytes())
    ours = {}

    def walk(prefix, messages):
        for m in messages:
            name = f"{prefix}{m.name}"
            ours[name] = m
            walk(f"{name}.", m.nested_type)

    for f in fds.file:
        walk("", f.message_type)
    theirs = service_pb2.DESCRIPTOR
    compared = 0
    for name, m in ours.items():
        if m.options.map_entry:
            continue
        t = theirs.pool.FindMessageTypeByName(f"inference.{name}")
        for field in m.field:
            tf = t.fields_by_name.get(field.name)
            check(tf is not None, f"{name}.{field.name} exists in Triton's proto")
            # Triton's descriptor is the python runtime's: compare number, type and label.
            same = (tf.number, tf.type, tf.label) == (field.number, field.type, field.label)
            check(same, f"{name}.{field.name} = {field.number} as in Triton's proto")
            compared += 1
    check(compared >= 40, f"{compared} fields compared")
    service = theirs.services_by_name["GRPCInferenceService"]
    for rpc in ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]:
        check(rpc in service.methods_by_name, f"rpc {rpc} is Triton's")


def main():
    url, golden_dir = sys.argv[1], Path(sys.argv[2])
    if len(sys.argv) > 3:
        same_wire_format(sys.argv[3])
    client = grpcclient.InferenceServerClient(url=url)
    check(client.is_server_live(), "is_server_live")
    check(client.is_server_ready(), "is_server_ready")
    meta = client.get_server_metadata(as_json=True)
    check(meta["name"] == "switchyard", "get_server_metadata")

    for model, version in [("mlp", "v1"), ("mlp", "v2"), ("resnet18", "v1")]:
        g = json.loads((golden_dir / f"{model}-{version}.json").read_text())
        gi, go = g["inputs"][0], g["outputs"][0]
        md = client.get_model_metadata(model, version, as_json=True)
        names_match = md["inputs"][0]["name"] == gi["name"] and md["outputs"][0]["name"] == go["name"]
        check(names_match, f"get_model_metadata {model}:{version}")
        # int64 fields come back as strings in protobuf's JSON form.
        tensor = md["inputs"][0]
        shape_matches = tensor["shape"][1:] == [str(d) for d in gi["shape"][1:]]
        check(tensor["datatype"] == "FP32" and shape_matches, f"model metadata tensors {model}:{version}")
        check(client.is_model_ready(model, version), f"is_model_ready {model}:{version}")
        x = np.asarray(gi["data"], dtype=np.float32).reshape(gi["shape"])
        want = np.asarray(go["data"], dtype=np.float32).reshape(go["shape"])
        inp = grpcclient.InferInput(gi["name"], list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = grpcclient.InferRequestedOutput(go["name"])
        # Triton's schedule parameters travel as parameters (timeout int64, priority uint64).
        res = client.infer(model, [inp], model_version=version, outputs=[out], request_id="tc-1", priority=1,
                           timeout=30_000_000)
        got = res.as_numpy(go["name"])
        shape = got.shape if got is not None else None
        check(shape == want.shape, f"infer {model}:{version} shape {shape}")
        err = float(np.max(np.abs(got - want)))
        check(err < 1e-4, f"infer {model}:{version} matches golden (max abs err {err:.2e})")
        check(res.get_response().id == "tc-1", "request id echoed")
        check(res.get_response().model_version == version, "model version echoed")

    # A batch of two rows: each row's answer is the single-row answer.
    g = json.loads((golden_dir / "mlp-v1.json").read_text())
    x = np.asarray(g["inputs"][0]["data"], dtype=np.float32).reshape(g["inputs"][0]["shape"])
    both = np.concatenate([x[:1], x[:1]])
    inp = grpcclient.InferInput("features", list(both.shape), "FP32")
    inp.set_data_from_numpy(both)
    res = client.infer("mlp", [inp], model_version="v1")
    names = [o.name for o in res.get_response().outputs]
    rows = res.as_numpy(names[0])
    check(rows.shape[0] == 2 and np.allclose(rows[0], rows[1], atol=1e-6), "two rows, the same answer")

    errors = [
        (lambda: client.infer("no-such-model", [grpcclient.InferInput("x", [1], "FP32")]), "StatusCode.NOT_FOUND",
         "not found"),
        (lambda: client.get_model_metadata("no-such-model"), "StatusCode.NOT_FOUND", "not found"),
    ]
    bad = grpcclient.InferInput("features", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    errors.append((lambda: client.infer("mlp", [bad]), "StatusCode.INVALID_ARGUMENT", "expects [-1, 64]"))
    for call, status, needle in errors:
        try:
            call()
            check(False, f"{status} raised")
        except InferenceServerException as e:
            check(e.status() == status and needle in e.message(), f"{status}: {e.message()}")
    print("tritonclient grpc: all checks passed")


if __name__ == "__main__":
    main()
