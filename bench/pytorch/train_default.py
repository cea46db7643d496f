#!/usr/bin/env python3
"""The default `se train` recipe in PyTorch, for the time comparison in docs/benchmarks.md:
SE-ResNet-20 (the CIFAR network of bench.py, one input channel) on the embedded MNIST digits of
`datasets/mnist` (8,000 training, 2,000 test), 5 epochs of batch 64, SGD with Nesterov momentum
0.9 and coupled weight decay 5e-4, learning rate 0.1 after half an epoch of linear warmup from
0.01, cosine decay to zero at the last step (per iteration), zero-padding of 2 and a random
28x28 crop, normalised by MNIST's mean and std (0.1307, 0.3081); the test split is evaluated
after every epoch, as Burn's learner validates.

    python train_default.py [--threads N] [--seed 42]

Prints one JSON line: the fit time (training and the per-epoch evaluations, what `se train`'s
`train_images_per_second` is measured over), the training steps alone, the test accuracy after
each epoch, and the peak memory. Never a dependency of the tests.
"""
import argparse
import gzip
import json
import math
import os
import resource
import struct
import time

import torch
import torch.nn.functional as F

from bench import CifarResNet

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "datasets", "mnist")
MEAN, STD = 0.1307, 0.3081


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        pixels = torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8)
        return pixels.view(count, 1, rows, cols)
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def normalise(images):
    return (images.float() / 255.0 - MEAN) / STD


def augment(images, pad, generator):
    """Zero padding of `pad` and a random crop back to the image size, per image."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    return torch.stack([p[:, y : y + h, x : x + w] for p, y, x in zip(padded, dy, dx)])


def learning_rate(step, peak, warmup_steps, total_steps):
    if step < warmup_steps:
        start = peak / 10
        return start + (peak - start) * step / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return 0.5 * peak * (1 + math.cos(math.pi * progress))


def accuracy(model, images, labels, batch):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            logits = model(normalise(images[i : i + batch]))
            correct += (logits.argmax(1) == labels[i : i + batch]).sum().item()
    model.train()
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    train_x, train_y = read_idx("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz")
    test_x, test_y = read_idx("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz")
    model = CifarResNet(20, se=True, num_classes=10, in_chans=1)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    steps_per_epoch = math.ceil(len(train_x) / args.batch)
    total_steps = args.epochs * steps_per_epoch
    warmup_steps = round(0.5 * steps_per_epoch)

    step, train_seconds, accuracies = 0, 0.0, []
    fit_started = time.perf_counter()
    for _ in range(args.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(train_x), generator=generator)
        for i in range(0, len(order), args.batch):
            index = order[i : i + args.batch]
            x = normalise(augment(train_x[index], 2, generator))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, 0.1, warmup_steps, total_steps)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), train_y[index]).backward()
            optimizer.step()
            step += 1
        train_seconds += time.perf_counter() - started
        accuracies.append(accuracy(model, test_x, test_y, args.batch))
    fit_seconds = time.perf_counter() - fit_started

    print(json.dumps({
        "framework": "pytorch",
        "backend": f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads",
        "recipe": "se_resnet20, embedded MNIST, 5 epochs, batch 64 (se train's defaults)",
        "fit_seconds": fit_seconds,
        "train_seconds": train_seconds,
        "train_images_per_second": args.epochs * len(train_x) / fit_seconds,
        "test_accuracy_per_epoch": accuracies,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
