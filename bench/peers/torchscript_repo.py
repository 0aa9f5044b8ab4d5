"""What both peer servers read from a Switchyard model repository: each model's first version,
its TorchScript file, its output name and its max batch size. Benchmark only, not product code."""
import json
from pathlib import Path

import torch

# The cells of `switchyard-bench peers` use these two models; the others are left unserved.
MODELS = ("mlp", "resnet18")


def models(repo: str):
    """(name, model.pt path, output name, max batch size) for each benchmarked model."""
    for name in MODELS:
        vdir = Path(repo) / name / "v1"
        cfg = json.loads((vdir / "config.json").read_text())
        yield name, str((vdir / "model.pt").resolve()), cfg["outputs"][0]["name"], cfg["batching"]["max_batch_size"]


def load(path: str) -> torch.jit.ScriptModule:
    module = torch.jit.load(path, map_location="cpu")
    module.eval()
    return module


def forward(module: torch.jit.ScriptModule, x) -> "numpy.ndarray":  # noqa: F821
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()
