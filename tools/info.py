"""Every SelecSLS configuration at a glance, then one real image through a classifier.

    python -m selecsls.tools.info [--image PATH] [--model selecsls60] [--weights NAME_OR_FILE]

Prints parameters, MACs and feature shapes of all six configurations at --size, then classifies
one image (by default a real ImageNet validation image from ../shared/data) in fp32 and in the
deploy path (BN folded, channels_last, bf16 autocast), reporting agreement and speed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from selecsls.backbones import BACKBONES
from selecsls.backbones.fusion import fuse_bn
from selecsls.heads import build_classifier, load_model
from selecsls.tools._cli import run_cli
from selecsls.tools.bench.flops import count_macs
from selecsls.tools.engine.amp import cpu_has_bf16

SAMPLE_DIR = Path("..") / "shared" / "data" / "imagenet_sample" / "val"
DEFAULT_IMAGE = SAMPLE_DIR / "n02391049" / "n02391049_zebra.JPEG"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def config_table(size: int) -> str:
    """Markdown table: params, MACs and feature shapes (C x H x W) of every configuration."""
    lines = [
        f"| model | params (M) | GMACs @{size} | stride4 | stride8 | stride16 |",
        "|---|---:|---:|---|---|---|",
    ]
    for name in BACKBONES:
        model = build_classifier(name).eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            feats = model.backbone(torch.zeros(1, 3, size, size))
        shapes = [" x ".join(map(str, f.shape[1:])) for f in feats.values()]
        macs = count_macs(model, (size, size))
        lines.append(
            f"| {name} | {params / 1e6:.2f} | {macs / 1e9:.2f} | " + " | ".join(shapes) + " |"
        )
    return "\n".join(lines)


def load_image(path: Path, size: int) -> torch.Tensor:
    """ImageNet eval preprocessing: resize the short side to size/0.875 (bicubic), centre crop."""
    preprocess = transforms.Compose(
        [
            transforms.Resize(round(size / 0.875), transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    try:
        image = Image.open(path).convert("RGB")
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read image ({err})") from None
    return preprocess(image).unsqueeze(0)


def class_names() -> list[str]:
    """The 1000 ImageNet class names in the standard index order (shipped with torchvision)."""
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


def timed(fn, reps: int = 5) -> tuple[torch.Tensor, float]:
    """(output, median milliseconds) of `fn()` after one warm-up call."""
    out, times = fn(), []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return out, sorted(times)[len(times) // 2]


def classify(args: argparse.Namespace) -> None:
    model = load_model(args.weights) if args.weights else build_classifier(args.model)
    model.eval()
    image = load_image(args.image, args.size)
    deploy = fuse_bn(model).to(memory_format=torch.channels_last)
    image_cl = image.contiguous(memory_format=torch.channels_last)
    # bf16 only where the CPU computes in it: elsewhere it is several times slower than fp32
    precision = "bf16" if cpu_has_bf16() else "fp32"
    with torch.inference_mode():
        logits, eager_ms = timed(lambda: model(image)["logits"])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            fast, fast_ms = timed(lambda: deploy(image_cl)["logits"])
    probs = logits.float().softmax(1)[0]
    names = class_names() if probs.numel() == 1000 else [str(i) for i in range(probs.numel())]
    source = args.weights or f"{model.config['backbone']}, random weights"
    print(f"\n{args.image} through {source}:")
    for p, i in zip(*probs.topk(5)):
        print(f"  {p.item():6.2%}  {names[i]}")
    same = fast.float().argmax(1).item() == logits.argmax(1).item()
    print(
        f"fp32 eager {eager_ms:.1f} ms, deploy (BN folded, channels_last, {precision}) "
        f"{fast_ms:.1f} ms "
        f"({eager_ms / fast_ms:.1f}x); top-1 {'agrees' if same else 'DIFFERS'}"
    )
    if not args.weights:
        print("(random weights: add --weights selecsls60.timm for real predictions; see README)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="image to classify")
    parser.add_argument("--model", default="selecsls60", help="configuration to build")
    parser.add_argument("--weights", default=None, help="checkpoint file or published name")
    parser.add_argument("--size", type=int, default=224, help="input size in pixels")
    parser.add_argument("--no-table", action="store_true", help="skip the configuration table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    if not args.no_table:
        print(config_table(args.size))
    if not args.image.is_file():
        raise FileNotFoundError(
            f"{args.image}: no such image (the default is ImageNet sample data beside the repo; "
            "pass --image PATH)"
        )
    classify(args)
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
