"""ImageNet loader throughput against what the training step consumes, in one run.

    python -m selecsls.tools.bench.loader --images 2000 --workers 4 8 16 --batch 256
    python -m selecsls.tools.bench.loader --workers 16 --batch 256 --consumer selecsls60 \
        --device cuda

Writes synthetic JPEGs in the ImageNet layout (root/train/<class>/*.JPEG) at ImageNet's typical
sizes and file sizes (most photos 500 px on the long side, a few smaller or larger; about
110 kB each at quality 90), then drains the training DataLoader exactly as the classification
task builds it (`ImageFolder` + `TrainTransform`: JPEG decode, random resized crop, flip, colour
jitter; uint8 batches, pinned on CUDA) with each worker count, over whole rounds of one batch
per worker after a warm-up round (`loader_images_per_s` says why).
With --consumer the same run times that model's training step at the batch size (bf16
channels_last, `measure_train_steps`) and says which side bounds training.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from selecsls.datasets.device_decode import DeferredTrainTransform, collate_deferred, materialize
from selecsls.datasets.imagenet import ImageFolder, collate
from selecsls.datasets.transforms import TrainTransform

# (width, height) of typical ImageNet train photos and how often they occur (roughly: ~75% are
# 500 px on the long side, landscape before portrait; the rest smaller or larger)
TYPICAL_SIZES = ((500, 375), (500, 333), (375, 500), (500, 400), (333, 500), (640, 480), (300, 225))
SIZE_WEIGHTS = (0.35, 0.15, 0.1, 0.1, 0.05, 0.15, 0.1)


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 with a photo's mix of smooth areas and texture: blurred colour blobs plus
    fine noise, so JPEG sizes (and decode work) land near real photos' rather than a flat
    image's few kB."""
    coarse = rng.integers(0, 256, (max(height // 24, 2), max(width // 24, 2), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    image += rng.integers(-28, 29, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_imagenet_layout(root: Path, count: int, classes: int = 10, seed: int = 0) -> int:
    """`count` JPEGs under root/train/<class>/ (class folders n0..); returns their total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(count):
        folder = root / "train" / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        width, height = TYPICAL_SIZES[rng.choice(len(TYPICAL_SIZES), p=SIZE_WEIGHTS)]
        ok, data = cv2.imencode(
            ".JPEG", synthetic_photo(rng, width, height), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        (folder / f"img_{i:06d}.JPEG").write_bytes(data.tobytes())
        total += len(data)
    return total


class Repeated(torch.utils.data.Dataset):
    """`dataset` read over and over up to `length` items: enough batches for whole worker rounds
    without writing more JPEGs (the decode work per item is the same either way)."""

    def __init__(self, dataset, length: int) -> None:
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]


def loader_images_per_s(
    root: Path,
    workers: int,
    batch: int,
    size: int,
    rounds: int,
    pin: bool,
    device_decode: torch.device | None = None,
) -> float:
    """Images/s the training loader delivers with `workers` processes, over `rounds` whole rounds.

    Each worker makes whole batches, so with W workers the batches come in bursts of W, one
    burst per batch time. The clock starts at the first batch of the second burst (every worker
    has started and made one) and stops at the first of burst 2 + rounds, so it spans whole
    bursts: a window of fewer batches than W sees one burst arrive at once and overstates the
    rate (16 workers timed over 8 batches read 5723 images/s on the H200 machine, 8 workers
    1105).

    With `device_decode` (data.device_decode) the workers only read files and draw the random
    crops; each batch is then decoded and augmented on that device in this process, and the
    clock includes it (synchronised on CUDA).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    transform = DeferredTrainTransform if device_decode is not None else TrainTransform
    dataset = ImageFolder(root / "train", transform(size))
    if len(dataset) < batch:
        raise ValueError(
            f"{len(dataset)} images under {root / 'train'} make no batch of {batch}: "
            "raise --images or lower --batch"
        )
    burst = max(workers, 1)
    needed = batch * burst * (rounds + 1) + batch
    loader = DataLoader(
        Repeated(dataset, max(needed, len(dataset))),
        batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate if device_decode is None else collate_deferred,
        pin_memory=pin,
        drop_last=True,
        persistent_workers=False,
    )
    first, last = burst, burst * (rounds + 1)
    start = None
    for index, data in enumerate(loader):
        if device_decode is not None:
            materialize(data, size, TF.InterpolationMode.BICUBIC, device_decode)
            if device_decode.type == "cuda":
                torch.cuda.synchronize(device_decode)
        if index == first:
            start = time.perf_counter()
        if index == last:
            return rounds * burst * batch / (time.perf_counter() - start)
    raise RuntimeError(f"the loader stopped after {index + 1} batches, before batch {last}")


def consumer_images_per_s(name: str, batch: int, size: int, device: str, reps: int) -> float:
    """Images/s of `name`'s bf16 channels_last training step at this batch (benchmark models)."""
    from selecsls.tools.bench.models import resolve_model
    from selecsls.tools.bench.timing import measure_train_steps, summarize

    dev = torch.device(device)
    torch.backends.cudnn.benchmark = True
    model = resolve_model(name).build().to(dev)
    times = measure_train_steps(model, batch, size, reps, 2, dev, amp="bf16")
    return 1e3 * batch / summarize(times)["median_ms"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1200, help="synthetic JPEGs written")
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="loader worker counts")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224, help="training crop")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds (a batch per worker each)")
    p.add_argument("--consumer", help="also time this model's training step (benchmark names)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=5, help="timed training steps (--consumer)")
    p.add_argument("--root", help="existing ImageNet-layout folder (default: a temporary one)")
    p.add_argument(
        "--device-decode",
        action="store_true",
        help="also time data.device_decode: workers read files, --device decodes and augments",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(args.root) if args.root else Path(folder)
        if not args.root:
            total = write_imagenet_layout(root, args.images)
            print(
                f"{args.images} synthetic JPEGs, {total / args.images / 1e3:.0f} kB each on average"
            )
        pin = args.device.startswith("cuda")
        rates = {}
        for workers in args.workers:
            rates[workers] = loader_images_per_s(
                root, workers, args.batch, args.size, args.rounds, pin
            )
            each = rates[workers] / max(workers, 1)
            print(f"loader, {workers:2d} workers: {rates[workers]:8.0f} images/s, {each:.0f} per "
                  f"worker (batch {args.batch}, {args.size} px)")  # fmt: skip
        for workers in args.workers if args.device_decode else ():
            key = f"{workers} + device decode"
            rates[key] = loader_images_per_s(
                root, workers, args.batch, args.size, args.rounds, pin, torch.device(args.device)
            )
            print(f"loader, {workers:2d} workers + decode on {args.device}: {rates[key]:8.0f} "
                  "images/s")  # fmt: skip
    if args.consumer:
        used = consumer_images_per_s(args.consumer, args.batch, args.size, args.device, args.reps)
        best = max(rates.values())
        print(f"{args.consumer} training step (bf16, channels_last, {args.device}): "
              f"{used:.0f} images/s")  # fmt: skip
        bound = "the loader" if best < used else "the training step"
        print(f"best loader / step: {best / used:.2f}x: {bound} bounds training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
