#!/bin/sh
# Creates the venv of `cargo xtask bench --vs-pytorch --vs-onnxruntime` (PyPI's full torch wheel, several
# GB; `--no-deps` installs do not import) and prints its python. Reuses it when it exists.
#   SE_TORCH_VENV  where the venv lives (default: bench/pytorch/.venv)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${SE_TORCH_VENV:-$here/.venv}
if ! "$venv/bin/python" -c "import torch, timm, onnx, onnxruntime" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet torch torchvision timm onnx onnxruntime >&2
fi
echo "$venv/bin/python"
