#!/usr/bin/env python3
"""KServe 0.21's Python model server (`kserve.ModelServer`) serving the TorchScript models of a
Switchyard model repository, for `switchyard-bench peers`: a custom `kserve.Model`, as KServe's
docs write one. Flags other than --model-repository are KServe's own (--http_port, --grpc_port,
--enable_latency_logging, ...)."""
import argparse

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid

import torchscript_repo


class TorchScriptModel(Model):
    def __init__(self, name: str, path: str, output: str):
        super().__init__(name)
        self.path, self.output = path, output
        self.module = None

    def load(self) -> bool:
        self.module = torchscript_repo.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        y = torchscript_repo.forward(self.module, payload.inputs[0].as_numpy())
        # JSON over REST (as the other servers answer); over gRPC KServe answers raw tensors to raw
        # inputs (`use_binary_outputs`), and encoding them raw here spares it a list round trip.
        raw = payload.use_binary_outputs
        out = InferOutput(name=self.output, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=raw)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[out],
            use_binary_outputs=raw,
        )


def main():
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model-repository", required=True)
    args, _ = parser.parse_known_args()
    served = []
    for name, path, output, _ in torchscript_repo.models(args.model_repository):
        m = TorchScriptModel(name, path, output)
        m.load()
        served.append(m)
    ModelServer().start(served)


if __name__ == "__main__":
    main()
