#!/usr/bin/env bash
# Builds the two images the k8s/ objects name, with docker or podman, from the repository
# root: switchyard/switchyard:TAG (binaries, libtorch, the filter) and
# switchyard/switchyard-filter:TAG (the filter for Istio's WasmPlugin). Push them where your
# cluster pulls from and point the kustomizations' `images:` there (k8s/README.md).
#   k8s/image/build.sh [TAG]        TORCH_INDEX=… for a CUDA libtorch (see Containerfile)
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-0.1.0}
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  for e in docker podman; do
    if command -v "$e" >/dev/null; then engine=$e; break; fi
  done
fi
[ -n "$engine" ] || { echo "k8s/image/build.sh: needs docker or podman (or CONTAINER_ENGINE)" >&2; exit 2; }
echo "==> switchyard/switchyard:$tag ($engine)"
"$engine" build -f k8s/image/Containerfile \
  --build-arg "TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" \
  -t "switchyard/switchyard:$tag" .
echo "==> switchyard/switchyard-filter:$tag"
scripts/build-filter.sh
"$engine" build -f k8s/image/Containerfile.filter -t "switchyard/switchyard-filter:$tag" .
echo "built switchyard/switchyard:$tag and switchyard/switchyard-filter:$tag"
