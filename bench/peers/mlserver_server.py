#!/usr/bin/env python3
"""MLServer 1.7.1 serving the TorchScript models of a Switchyard model repository, for
`switchyard-bench peers`: a custom runtime (`TorchScript`, an `mlserver.MLModel`) with adaptive
batching, as MLServer's docs set one up. Run as a script it writes the settings into --workdir and
execs `mlserver start` there; MLServer's workers import this module for the runtime class."""
import argparse
import json
import os
import sys
from pathlib import Path

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

import torchscript_repo


class TorchScript(MLModel):
    async def load(self) -> bool:
        self._module = torchscript_repo.load(self.settings.parameters.uri)
        self._output = self.settings.parameters.extra["output"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        y = torchscript_repo.forward(self._module, NumpyCodec.decode_input(payload.inputs[0]))
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output(self._output, y)])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-repository", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch-time-us", type=int, default=2000,
                   help="adaptive batching's max_batch_time (0: adaptive batching off)")
    a = p.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    # Production settings: no debug logging of every request.
    settings = {"debug": False, "http_port": a.http_port, "grpc_port": a.grpc_port, "metrics_port": a.metrics_port}
    (work / "settings.json").write_text(json.dumps(settings))
    for name, path, output, max_batch in torchscript_repo.models(a.model_repository):
        mdir = work / name
        mdir.mkdir(exist_ok=True)
        ms = {
            "name": name,
            "implementation": "mlserver_server.TorchScript",
            "parameters": {"uri": path, "extra": {"output": output}},
        }
        if a.max_batch_time_us > 0:
            ms |= {"max_batch_size": max_batch, "max_batch_time": a.max_batch_time_us / 1e6}
        (mdir / "model-settings.json").write_text(json.dumps(ms))
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    mlserver = str(Path(sys.executable).with_name("mlserver"))
    os.execv(mlserver, [mlserver, "start", str(work)])


if __name__ == "__main__":
    main()
