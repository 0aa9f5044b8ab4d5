#!/usr/bin/env python3
"""Generate the deterministic demo model repository and golden test vectors.

Nothing can be downloaded from a model hub here, so the weights are random but seeded:
the same torch version produces byte-identical outputs on every machine.

Layout written (all under --out, default models/repo):
    <model>/<version>/model.pt        TorchScript module
    <model>/<version>/config.json     serving config (inputs, outputs, batching, device)
and golden vectors under --golden (default models/golden):
    <model>-<version>.json            {"inputs": {...}, "outputs": {...}} computed by torch

Re-running is cheap: a stamp holding a hash of this script (and torch's version) skips the
work when nothing changed.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
import torchvision

HERE = Path(__file__).resolve().parent


class TabularMlp(torch.nn.Module):
    """64 features -> 2 class probabilities: the shape of a fraud/churn classifier."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden // 2),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden // 2, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def mlp(version: int) -> torch.nn.Module:
    torch.manual_seed(1000 + version)
    # v2 is wider: a canary that really differs from the stable version.
    return TabularMlp(hidden=128 if version == 1 else 256)


def resnet18(version: int) -> torch.nn.Module:
    torch.manual_seed(2000 + version)
    model = torchvision.models.resnet18(weights=None, num_classes=1000)
    # Random BatchNorm statistics so that eval-mode outputs are not degenerate.
    g = torch.Generator().manual_seed(3000 + version)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


MODELS = {
    "mlp": {
        "build": mlp,
        "example": lambda: torch.randn(4, 64, generator=torch.Generator().manual_seed(7)),
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        # No max_queue_delay_us: batching is work-conserving (an idle engine takes what is
        # queued at once; batches grow while it is busy). Set it only to hold for fuller batches.
        "batching": {
            "max_batch_size": 64,
            "max_queue_size": 1024,
            "default_timeout_us": 5_000_000,
        },
    },
    "resnet18": {
        "build": resnet18,
        "example": lambda: torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(8)),
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}],
        "batching": {
            # CPU throughput peaks around 4-8 images per batch; GPUs want more (see docs).
            "max_batch_size": 8,
            "max_queue_size": 128,
            "default_timeout_us": 30_000_000,
        },
    },
}
VERSIONS = ["v1", "v2"]


def stamp_value() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(torch.__version__.encode())
    h.update(torchvision.__version__.encode())
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def generate(out: Path, golden: Path) -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name, spec in MODELS.items():
        for version in VERSIONS:
            number = int(version[1:])
            model = spec["build"](number).eval()
            example = spec["example"]()
            with torch.no_grad():
                traced = torch.jit.trace(model, example)
                expected = traced(example)
            vdir = out / name / version
            vdir.mkdir(parents=True, exist_ok=True)
            tmp = vdir / ".model.pt.tmp"
            traced.save(str(tmp))
            os.replace(tmp, vdir / "model.pt")
            config = {
                "platform": "torchscript",
                "inputs": spec["inputs"],
                "outputs": spec["outputs"],
                "batching": spec["batching"],
                "instances": 1,
                "device": "auto",
            }
            write_atomic(vdir / "config.json", (json.dumps(config, indent=2) + "\n").encode())
            vector = {
                "model": name,
                "version": version,
                "inputs": [
                    {
                        "name": spec["inputs"][0]["name"],
                        "datatype": "FP32",
                        "shape": list(example.shape),
                        "data": example.flatten().tolist(),
                    }
                ],
                "outputs": [
                    {
                        "name": spec["outputs"][0]["name"],
                        "datatype": "FP32",
                        "shape": list(expected.shape),
                        "data": expected.flatten().tolist(),
                    }
                ],
            }
            write_atomic(golden / f"{name}-{version}.json", json.dumps(vector).encode())
            print(f"  generated {name}/{version} -> {vdir}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "repo")
    parser.add_argument("--golden", type=Path, default=HERE / "golden")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args()

    stamp = args.out / ".generated"
    want = stamp_value()
    if not args.force and stamp.exists() and stamp.read_text().strip() == want:
        print(f"models: up to date in {args.out}")
        return 0
    print(f"models: generating demo models into {args.out} (torch {torch.__version__})", flush=True)
    generate(args.out, args.golden)
    write_atomic(stamp, (want + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
