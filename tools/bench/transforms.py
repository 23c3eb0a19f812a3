"""Train-transform throughput per data worker: ours vs torchvision's PIL pipeline, same run.

    python -m selecsls.tools.bench.transforms --data ../shared/data/imagenet_sample/val

Each pipeline decodes every JPEG of the folder (from memory) and produces a 224x224
random-resized, randomly flipped crop; the pipelines take turns image by image, so that load
from other processes hits all of them alike.
One thread (a data worker is one process). Reports images/s and the ratio to torchvision.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T

from selecsls.datasets.imagenet import EXTENSIONS
from selecsls.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform


def pipelines(size: int) -> dict:
    bicubic = T.InterpolationMode.BICUBIC
    tv_uint8 = T.Compose(
        [
            T.RandomResizedCrop(size, interpolation=bicubic),
            T.RandomHorizontalFlip(),
            T.PILToTensor(),
        ]
    )
    tv_float = T.Compose(
        [
            T.RandomResizedCrop(size, interpolation=bicubic),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    ours = TrainTransform(size, color_jitter=0.0)
    return {
        "torchvision (PIL, ToTensor+Normalize)": lambda data: tv_float(_pil(data)),
        "torchvision (PIL, uint8)": lambda data: tv_uint8(_pil(data)),
        "ours, PIL path (non-JPEG files)": lambda data: ours(_pil(data)),
        "ours, JPEG path (the default)": ours.from_jpeg_bytes,
    }


def _pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="folder of <class>/<image> JPEGs")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in EXTENSIONS)
    if not files:
        raise SystemExit(f"no images under {args.data}")
    datas = [p.read_bytes() for p in files]  # from memory: measure decoding, not the disk

    fns = pipelines(args.size)
    seconds = dict.fromkeys(fns, 0.0)
    random.seed(0)
    torch.manual_seed(0)
    for _ in range(args.passes):
        for data in datas:  # image by image, so load spikes hit every pipeline alike
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(data)
                seconds[name] += time.perf_counter() - start
    n = len(datas) * args.passes
    base = n / seconds["torchvision (PIL, ToTensor+Normalize)"]
    print(f"{len(files)} JPEGs x {args.passes} passes, {args.size} px, 1 thread")
    for name, s in seconds.items():
        print(f"{name:40s} {n / s:8.1f} images/s  {n / s / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
