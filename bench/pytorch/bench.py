#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench --vs-pytorch`: the same models, inputs and settings as
`se bench`, one measurement per call, printed as one JSON line in the same schema.

    python bench.py --model se_resnet20 --mode train --batch 128 --input-size 32 --repeat 5

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


def median_seconds(repeat, step):
    step()  # warm-up
    times = []
    for _ in range(max(repeat, 1)):
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
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build(args.model, args.in_channels)
    x = torch.randn(args.batch, args.in_channels, args.input_size, args.input_size)
    if args.mode == "infer":
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

    seconds = median_seconds(args.repeat, step)
    print(json.dumps({
        "framework": "pytorch",
        "backend": f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads",
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
