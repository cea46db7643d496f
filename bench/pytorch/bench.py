#!/usr/bin/env python3
"""PyTorch and ONNX Runtime side of `cargo xtask bench --vs-pytorch --vs-onnxruntime`: the same
models, inputs and settings as `se bench`, one measurement per call, printed as one JSON line in
the same schema.

    python bench.py --model se_resnet20 --mode train --batch 128 --input-size 32 --repeat 5
    python bench.py --model se_resnet50 --mode infer --batch 1 --input-size 224 --runtime onnxruntime

Runtimes (inference; training is PyTorch eager only):
- `eager`: `torch.no_grad()` in eval mode, NCHW;
- `channels_last`: `torch.inference_mode()`, model and input in channels-last memory format;
- `onnxruntime`: the model exported with `torch.onnx.export` (opset 17), run by ONNX Runtime's
  CPU provider with every graph optimisation (BatchNorm folding, fusions, NCHWc layout) and one
  thread per core.

ImageNet models come from timm (`se_resnet50` = timm `seresnet50`, `resnet50` = `resnet50`); the
CIFAR ResNets (He et al., option-B projection shortcuts; SE hidden width exactly C/16 as the paper)
are defined below to match the Rust registry's, parameter for parameter (the xtask compares the
counts). Eval = `torch.no_grad()` in eval mode; train = forward + cross-entropy + backward + SGD
step. Never a dependency of the tests.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SE(nn.Module):
    def __init__(self, channels, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, se):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SE(planes, max(planes // 16, 1)) if se else nn.Identity()
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, depth, se, num_classes=10, in_chans=3):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inplanes = [], 16
        for i, planes in enumerate([16, 32, 64]):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(inplanes, planes, stride, se))
                inplanes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def build(name, in_chans):
    cifar = {"resnet": False, "se_resnet": True}
    for prefix, se in cifar.items():
        depth = name[len(prefix):]
        if name.startswith(prefix) and depth in ("20", "32", "44", "56", "110"):
            return CifarResNet(int(depth), se, in_chans=in_chans)
    import timm

    timm_names = {"se_resnet50": "seresnet50", "se_resnet101": "seresnet101"}
    return timm.create_model(timm_names.get(name, name), pretrained=False, in_chans=in_chans)


def onnxruntime_step(model, x, threads):
    """Exports `model` (eval mode) to ONNX and returns a step running it in ONNX Runtime."""
    import os
    import tempfile

    import onnxruntime as ort

    model.eval()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # The session holds the model once created, so the exported file (100 MB for ResNet-50)
    # goes with its folder instead of piling up in /tmp run after run.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(
                model, (x,), path, input_names=["input"], output_names=["logits"],
                opset_version=17, dynamo=False,
            )
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    backend = f"onnxruntime {ort.__version__} cpu, {threads} threads, all graph optimisations"
    return (lambda: session.run(None, feed)), backend


def gemm_peak():
    """The machine's large-GEMM rate: float32 2048x2048 matrix products on every thread (MKL or
    OpenBLAS through torch), GFLOP/s, median of 10."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = median_seconds(10, lambda: torch.mm(a, b))
    print(json.dumps({
        "framework": "gemm-peak",
        "backend": f"torch {torch.__version__} mm, {torch.get_num_threads()} threads",
        "gflops": 2 * n**3 / seconds / 1e9,
    }))


def median_seconds(repeat, step, min_seconds=0.0):
    """Median timing of `step` after one warm-up: `repeat` timings, or more until they add up
    to `min_seconds` (at most 100,000), as `se bench --min-seconds` does."""
    step()  # warm-up
    times = []
    while len(times) < max(repeat, 1) or (sum(times) < min_seconds and len(times) < 100_000):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--mode", choices=["infer", "train"], required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--min-seconds", type=float, default=0.0,
        help="keep timing past --repeat until the timed steps add up to this many seconds",
    )
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    parser.add_argument(
        "--runtime", choices=["eager", "channels_last", "onnxruntime"], default="eager"
    )
    parser.add_argument(
        "--peak", action="store_true", help="measure the large-GEMM peak (GFLOP/s) instead"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak:
        return gemm_peak()
    if args.runtime != "eager" and args.mode != "infer":
        parser.error(f"--runtime {args.runtime} measures inference only")

    torch.manual_seed(0)
    model = build(args.model, args.in_channels)
    x = torch.randn(args.batch, args.in_channels, args.input_size, args.input_size)
    framework, backend = "pytorch", None
    if args.mode == "infer" and args.runtime == "onnxruntime":
        step, backend = onnxruntime_step(model, x, torch.get_num_threads())
        framework = "onnxruntime"
    elif args.mode == "infer" and args.runtime == "channels_last":
        model.eval()
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        framework = "pytorch-channels-last"

        def step():
            with torch.inference_mode():
                model(x)
    elif args.mode == "infer":
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    else:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        targets = torch.zeros(args.batch, dtype=torch.long)

        def step():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), targets).backward()
            optimizer.step()

    seconds = median_seconds(args.repeat, step, args.min_seconds)
    print(json.dumps({
        "framework": framework,
        "backend": backend or f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads",
        "model": args.model,
        "mode": args.mode,
        "batch": args.batch,
        "input_size": args.input_size,
        "median_ms": seconds * 1e3,
        "images_per_second": args.batch / seconds,
        "params": sum(p.numel() for p in model.parameters()),
        # Linux reports kilobytes.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
