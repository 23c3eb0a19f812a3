"""Prune a model's channels at a BN-gamma threshold, fold BN, and save the smaller network.

    python -m selecsls.tools.prune WEIGHTS --output OUT.pth [--threshold 1e-3] [--images FOLDER]

WEIGHTS is any file `load_model` accepts, or a published name. Prints kept/total channels,
parameters and MACs per stage before and after, and the measured max output difference against
the unpruned model on a fixed random batch (and on real images with --images). The output is a
normal checkpoint: `load_model(OUT.pth)` and every tool taking weights accept it as it is.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from selecsls.backbones.prune import KeepRule
from selecsls.heads import load_model, save_model
from selecsls.heads.prune import prune_model
from selecsls.tools._cli import run_cli
from selecsls.tools.deploy.prune_report import (
    format_table,
    output_difference,
    removed_nonzero_gammas,
    stage_table,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="weight file (any supported format) or published name")
    parser.add_argument("--output", required=True, help="pruned checkpoint to write")
    parser.add_argument(
        "--threshold", type=float, default=1e-3, help="keep a channel iff |gamma| > this"
    )
    parser.add_argument(
        "--fuse-only", action="store_true", help="fold BN but remove no channel (ignores threshold)"
    )
    parser.add_argument("--size", type=int, default=224, help="input side for MACs and the check")
    parser.add_argument("--batch", type=int, default=4, help="random images in the check batch")
    parser.add_argument("--images", default=None, help="folder of real images for a second check")
    parser.add_argument("--max-images", type=int, default=16, help="at most this many of --images")
    parser.add_argument("--model", default=None, help="architecture of a seed/timm file")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Raise ValueError naming the bad argument."""
    if not math.isfinite(args.threshold) or args.threshold < 0:
        raise ValueError(f"--threshold must be a finite number >= 0, got {args.threshold}")
    if args.size < 32 or args.batch < 1 or args.max_images < 1:
        raise ValueError("--size must be >= 32, --batch and --max-images >= 1")
    if not isinstance(args.weights, str) or not args.weights:
        raise ValueError("WEIGHTS must name a file or a published weight")
    output = Path(args.output)
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file name like pruned.pth")
    if args.images is not None and not Path(args.images).is_dir():
        raise FileNotFoundError(f"--images {args.images}: no such folder")


def load_images(folder: str, size: int, limit: int) -> torch.Tensor:
    """Up to `limit` images under `folder` (recursively, sorted): shorter side resized to
    size / 0.875 (bicubic), centre crop size x size, ImageNet-normalised -> (N, 3, size, size)."""
    from PIL import Image

    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"--images {folder}: no .jpg/.jpeg/.png/.bmp files found")
    batch = []
    for path in paths[:limit]:
        image = Image.open(path).convert("RGB")
        scale = size / 0.875 / min(image.size)
        w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
        array = (array / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        batch.append(torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1))
    return torch.stack(batch)


def print_differences(label: str, diffs: dict[str, tuple[float, float]]) -> None:
    for key, (absolute, relative) in diffs.items():
        print(f"max |{key} difference| on {label}: {absolute:.3g} ({relative:.3g} of max |{key}|)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_args(args)
    rule = KeepRule(None if args.fuse_only else args.threshold)
    model = load_model(args.weights, name=args.model).eval()
    pruned = prune_model(model, rule.threshold)
    size = (args.size, args.size)
    if rule.threshold is None:
        what = "fusion only, every channel kept"
    else:
        what = f"keep channel iff |gamma| > {rule.threshold}"
    print(f"{model.config['backbone']}: {what} (MACs per image at {args.size}x{args.size})")
    print(format_table(stage_table(model, pruned, rule, size)))
    count, largest = removed_nonzero_gammas(model, rule)
    if count:
        print(
            f"approximate: {count} removed channels have nonzero |gamma| <= {rule.threshold} "
            f"(largest {largest:.3g}); see the measured differences below"
        )
    else:
        print("exact: every removed channel has gamma == 0 (differences below are rounding)")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, *size, generator=generator)
    print_differences(
        f"a random batch ({args.batch}x3x{args.size}x{args.size})",
        output_difference(model, pruned, images),
    )
    if args.images is not None:
        real = load_images(args.images, args.size, args.max_images)
        print_differences(
            f"{len(real)} images from {args.images}", output_difference(model, pruned, real)
        )
    save_model(pruned, args.output)
    print(f"wrote {args.output}")
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
