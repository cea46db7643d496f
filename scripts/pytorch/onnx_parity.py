"""ONNX export parity: graphs written by `se_models::onnx` run by ONNX Runtime against our logits.

The Rust test `onnx_export_is_a_valid_graph_of_every_family` (crates/se-models/tests/interop.rs)
exports every family: the interop fixtures with their PyTorch weights (timm SE-ResNet,
SE-ResNeXt, ECA and CBAM ResNets, torchvision ResNet, Cadene SE-ResNet and SE-ResNeXt: basic and
bottleneck blocks, grouped convolutions, the Caffe stem) and random-weight models for sSE, scSE,
CBAM on bottlenecks, the SE-PRE, SE-POST and SE-Identity placements, max squeeze and the tanh
gate, NoSqueeze with the ReLU gate. With SE_ONNX_PARITY_DIR set it writes each graph, its input
and our logits. This script runs that test, checks each graph with `onnx.checker`, runs it in ONNX Runtime (all graph
optimisations) on the input and on its first image alone (a batch of another size), and prints
the largest absolute difference from our logits per model; it exits non-zero above 1e-4.

    python3 -m venv /tmp/venv-ort && /tmp/venv-ort/bin/pip install onnxruntime numpy onnx
    /tmp/venv-ort/bin/python scripts/pytorch/onnx_parity.py

No PyTorch needed; no network.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4


def main():
    worst = 0.0
    with tempfile.TemporaryDirectory() as out:
        out = pathlib.Path(out)
        subprocess.run(
            ["cargo", "test", "-p", "se-models", "--test", "interop", "onnx_export"],
            cwd=ROOT, check=True, env={**os.environ, "SE_ONNX_PARITY_DIR": str(out)},
        )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        print(f"onnx {onnx.__version__}, ONNX Runtime {ort.__version__}")
        print("| model | max abs diff, batch | max abs diff, 1 image |")
        print("|---|---|---|")
        for path in sorted(out.glob("*.onnx")):
            name = path.stem
            onnx.checker.check_model(str(path), full_check=True)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            x = np.load(out / f"{name}.input.npy")
            ours = np.load(out / f"{name}.logits.npy")
            theirs = session.run(["logits"], {"input": x})[0]
            one = session.run(["logits"], {"input": x[:1]})[0]
            diffs = (float(np.abs(theirs - ours).max()), float(np.abs(one - ours[:1]).max()))
            worst = max(worst, *diffs)
            print(f"| {name} | {diffs[0]:.1e} | {diffs[1]:.1e} |")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
