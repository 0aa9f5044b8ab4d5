#!/usr/bin/env python3
"""NVIDIA's unmodified tritonclient[grpc] through the demo's Envoy (switchyard-demo runs it
with the venv's python): the version its message asks for, which the policy allows, and a
model the policy does not name, refused by the filter. The one part of the demo in Python,
because the client is.

Usage: triton_client.py HOST:PORT
"""
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main():
    client = grpcclient.InferenceServerClient(sys.argv[1])
    x = grpcclient.InferInput("features", [1, 64], "FP32")
    x.set_data_from_numpy(np.zeros((1, 64), np.float32))
    r = client.infer("mlp", [x], model_version="v2")
    print(f"tritonclient[grpc] asked for mlp v2 (the policy allows it): answered by {r.get_response().model_version}")
    try:
        client.infer("no-such-model", [x])
    except InferenceServerException as e:
        print(f"a model the policy does not name: {e.status()} from the filter ({e.message()})")


if __name__ == "__main__":
    main()
