"""Writes the PyTorch parity fixtures that `crates/se-models/tests/interop.rs` loads.

Each fixture is a small model with random weights (random BatchNorm statistics too, so a
mistake in the BatchNorm mapping shows), built with the real PyTorch code of each layout:
timm's `ResNet`, torchvision's `ResNet`, and Cadene's `pretrainedmodels` `SENet`. For each we
save the state dict, a fixed input and the logits PyTorch computes in eval mode.

The tests never need PyTorch; this script is how the committed fixtures were made:

    python3 -m venv /tmp/venv-torch
    /tmp/venv-torch/bin/pip install torch torchvision timm safetensors numpy six tqdm munch
    /tmp/venv-torch/bin/pip install --no-deps pretrainedmodels
    /tmp/venv-torch/bin/python scripts/pytorch/make_interop_fixtures.py
    /tmp/venv-torch/bin/python scripts/pytorch/make_interop_fixtures.py --only cadene_senet154

Versions used for the committed files: torch 2.15.0, torchvision 0.29.2, timm 1.0.31,
pretrainedmodels 0.7.4.
"""

import json
import sys
import pathlib

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/se-models/tests/fixtures/interop"


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, BatchNorm statistics included, then eval mode."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.1)
            module.running_mean.normal_(std=0.1)
            module.running_var.uniform_(0.5, 2.0)
        elif isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.normal_(module.bias, std=0.1)
    return model.eval()


def timm_resnet(block: str, channels, stem_width, attn, cardinality=1, base_width=64):
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    block_args = {"attn_layer": attn} if attn else None
    return ResNet(
        BasicBlock if block == "basic" else Bottleneck,
        [2, 1, 1, 1],
        num_classes=10,
        channels=channels,
        stem_width=stem_width,
        cardinality=cardinality,
        base_width=base_width,
        block_args=block_args,
    )


def torchvision_resnet():
    """torchvision's ResNet and blocks, at stage widths 8..64 (its constructor fixes 64..512)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    model.inplanes = 64
    model.layer1 = model._make_layer(BasicBlock, 8, 2)
    model.layer2 = model._make_layer(BasicBlock, 16, 1, stride=2)
    model.layer3 = model._make_layer(BasicBlock, 32, 1, stride=2)
    model.layer4 = model._make_layer(BasicBlock, 64, 1, stride=2)
    model.fc = nn.Linear(64, 10)
    return model


def cadene_senet(block: str, planes, groups):
    """Cadene's SENet (the port of the Caffe release) at small widths.

    Same constructor arguments as `pretrainedmodels.se_resnet50` / `se_resnext50_32x4d`; the
    stages are rebuilt with the class's own `_make_layer` at smaller widths.
    """
    from pretrainedmodels.models.senet import SENet, SEResNetBottleneck, SEResNeXtBottleneck

    block_cls = SEResNetBottleneck if block == "se_resnet" else SEResNeXtBottleneck
    stem = planes[0] * 2
    model = SENet(block_cls, [2, 1, 1, 1], groups=groups, reduction=16, dropout_p=None,
                  inplanes=stem, input_3x3=False, downsample_kernel_size=1,
                  downsample_padding=0, num_classes=10)
    model.inplanes = stem
    model.layer1 = model._make_layer(block_cls, planes[0], 2, groups, 16)
    for index, width in enumerate(planes[1:], start=2):
        setattr(model, f"layer{index}", model._make_layer(block_cls, width, 1, groups, 16, stride=2))
    model.last_linear = nn.Linear(planes[-1] * 4, 10)
    return model


def cadene_senet154(planes, groups):
    """Cadene's `senet154` at small widths: SEBottleneck (3x3 conv 2·planes → 4·planes), the
    three-conv stem to 128 channels, 3x3 projection shortcuts from the second stage on."""
    from pretrainedmodels.models.senet import SENet, SEBottleneck

    model = SENet(SEBottleneck, [2, 1, 1, 1], groups=groups, reduction=16, dropout_p=0.2,
                  inplanes=128, input_3x3=True, downsample_kernel_size=3,
                  downsample_padding=1, num_classes=10)
    model.inplanes = 128
    model.layer1 = model._make_layer(SEBottleneck, planes[0], 2, groups, 16,
                                     downsample_kernel_size=1, downsample_padding=0)
    for index, width in enumerate(planes[1:], start=2):
        setattr(model, f"layer{index}", model._make_layer(
            SEBottleneck, width, 1, groups, 16, stride=2,
            downsample_kernel_size=3, downsample_padding=1))
    model.last_linear = nn.Linear(planes[-1] * 4, 10)
    return model


def write(name: str, model: nn.Module, input_shape, fmt: str, seed: int, describe: dict):
    model = randomize(model, seed)
    torch.manual_seed(seed + 1)
    x = torch.randn(*input_shape)
    with torch.no_grad():
        logits = model(x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        save_file(state, OUT / f"{name}.safetensors")
    else:
        torch.save(state, OUT / f"{name}.pth")
    np.save(OUT / f"{name}.input.npy", x.numpy().astype(np.float32))
    np.save(OUT / f"{name}.logits.npy", logits.numpy().astype(np.float32))
    describe = dict(describe, file=f"{name}.{fmt}", input=list(input_shape),
                    parameters=sum(p.numel() for p in model.parameters()))
    print(name, json.dumps(describe))
    return describe


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    index_path = OUT / "fixtures.json"
    if sys.argv[1:] == ["--only", "cadene_senet154"]:
        # Added later (torch 2.15.0+cpu, pretrainedmodels 0.7.4) without rewriting the others.
        index = json.loads(index_path.read_text())
        index["cadene_senet154"] = write(
            "cadene_senet154", cadene_senet154((4, 8, 16, 32), 4), (1, 3, 224, 224), "pth", 8,
            {"layout": "cadene", "code": "pretrainedmodels.models.senet.SENet(SEBottleneck, groups=4, input_3x3=True, downsample_kernel_size=3)"})
        index_path.write_text(json.dumps(index, indent=2) + "\n")
        return
    index = {
        "timm_se_resnet": write(
            "timm_se_resnet", timm_resnet("bottleneck", (8, 16, 32, 64), 8, "se"), (2, 3, 64, 64),
            "pth", 1, {"layout": "timm", "code": "timm.models.resnet.ResNet(Bottleneck, attn_layer='se')"}),
        "timm_se_resnext": write(
            "timm_se_resnext",
            timm_resnet("bottleneck", (16, 32, 64, 128), 16, "se", cardinality=4, base_width=8),
            (2, 3, 64, 64), "safetensors", 2,
            {"layout": "timm", "code": "timm.models.resnet.ResNet(Bottleneck, cardinality=4, base_width=8, attn_layer='se')"}),
        "timm_eca_resnet": write(
            "timm_eca_resnet", timm_resnet("basic", (8, 16, 32, 64), 8, "eca"), (2, 3, 64, 64),
            "safetensors", 3, {"layout": "timm", "code": "timm.models.resnet.ResNet(BasicBlock, attn_layer='eca')"}),
        "timm_cbam_resnet": write(
            "timm_cbam_resnet", timm_resnet("basic", (8, 16, 32, 64), 8, "cbam"), (2, 3, 64, 64),
            "safetensors", 4, {"layout": "timm", "code": "timm.models.resnet.ResNet(BasicBlock, attn_layer='cbam')"}),
        "torchvision_resnet": write(
            "torchvision_resnet", torchvision_resnet(), (2, 3, 64, 64), "pth", 5,
            {"layout": "torchvision", "code": "torchvision.models.resnet.ResNet(BasicBlock)"}),
        "cadene_se_resnet": write(
            "cadene_se_resnet", cadene_senet("se_resnet", (4, 8, 16, 32), 1), (1, 3, 224, 224), "pth", 6,
            {"layout": "cadene", "code": "pretrainedmodels.models.senet.SENet(SEResNetBottleneck)"}),
        "cadene_se_resnext": write(
            "cadene_se_resnext", cadene_senet("se_resnext", (16, 32, 64, 128), 4), (1, 3, 224, 224),
            "pth", 7, {"layout": "cadene", "code": "pretrainedmodels.models.senet.SENet(SEResNeXtBottleneck, groups=4)"}),
    }
    index_path.write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
