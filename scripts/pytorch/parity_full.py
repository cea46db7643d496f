"""Full-size PyTorch parity through the `se` command line.

For timm `seresnet50`, timm `seresnext50_32x4d` and Cadene `se_resnet50` (random weights,
BatchNorm statistics measured on random images, eval mode): save the state dict from PyTorch, `se import` it, run
`se logits` on the same input, compare with PyTorch's logits; then `se export` and load the
exported file back into a fresh PyTorch model with `load_state_dict(strict=True)` and compare
again. Prints one line per model with the largest absolute logit difference.

    /tmp/venv-torch/bin/python scripts/pytorch/parity_full.py [--se target/release/se]

(venv as in make_interop_fixtures.py). Needs no network: timm builds the models without weights.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from make_interop_fixtures import randomize  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def timm_model(name):
    import timm

    return lambda: timm.create_model(name, pretrained=False)


def cadene_model(name):
    def build():
        import pretrainedmodels.models.senet as senet

        return getattr(senet, name)(num_classes=1000, pretrained=None)

    return build


MODELS = [
    # (our registry name, PyTorch builder, layout)
    ("se_resnet50", timm_model("seresnet50"), "timm"),
    ("se_resnext50_32x4d", timm_model("seresnext50_32x4d"), "timm"),
    ("legacy_se_resnet50", cadene_model("se_resnet50"), "cadene"),
]


def calibrate(model, batches=4):
    """BatchNorm statistics measured on random images, as training leaves them: activations
    stay O(1) through the 50 layers and the logits have a trained network's scale (random
    statistics let them grow to hundreds, where f32 rounding alone exceeds 1e-4)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, 3, 224, 224))
    return model.eval()


def se(binary, *args):
    result = subprocess.run([binary, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"se {' '.join(args)} failed:\n{result.stderr}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--se", default=str(ROOT / "target/release/se"))
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        np.save(tmp / "x.npy", x.numpy())
        for name, build, layout in MODELS:
            model = calibrate(randomize(build(), seed=1))
            with torch.no_grad():
                expected = model(x).numpy()
            torch.save(model.state_dict(), tmp / f"{name}.pth")
            se(args.se, "import", "--layout", layout, "--model", name,
               "--weights", str(tmp / f"{name}.pth"), "--output", str(tmp / f"{name}.mpk"))
            se(args.se, "logits", "--model", name, "--weights", str(tmp / f"{name}.mpk"),
               "--input", str(tmp / "x.npy"), "--output", str(tmp / f"{name}.logits.npy"))
            ours = np.load(tmp / f"{name}.logits.npy")
            se(args.se, "export", "--model", name, "--weights", str(tmp / f"{name}.mpk"),
               "--output", str(tmp / f"{name}.safetensors"))
            from safetensors.torch import load_file

            fresh = build().eval()
            fresh.load_state_dict(load_file(tmp / f"{name}.safetensors"), strict=True)
            with torch.no_grad():
                back = fresh(x).numpy()
            print(f"{name:<20} {layout:<7} logits {list(expected.shape)}, |logit| max "
                  f"{np.abs(expected).max():.3f}: se import+logits vs PyTorch max abs diff "
                  f"{np.abs(ours - expected).max():.2e}; se export -> PyTorch strict load: "
                  f"max abs diff {np.abs(back - expected).max():.2e}")


if __name__ == "__main__":
    main()
