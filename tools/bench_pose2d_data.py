"""Training data pipeline throughput for 2D pose: samples/s of one worker (load, augment, encode).

One worker = the main process, as a DataLoader worker would run it: read the image, augment
(scale, rotation, crop/pad, flip, colour), encode heatmaps + PAFs + mask, normalise to a tensor.

    python -m selecsls.tools.bench_pose2d_data                       # COCO sample, 368x368
    python -m selecsls.tools.bench_pose2d_data --json A.json --images DIR --size 368x368
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from selecsls.datasets.augment import TrainAugment
from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.synthetic_people import parse_size
from selecsls.heads.codec2d import Pose2DCodec
from selecsls.heads.skeletons import COCO17_FLIP

COCO_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"


def throughput(dataset: CocoKeypoints, samples: int) -> dict[str, float]:
    """Wall and CPU samples/s over `samples` items (cycling through the dataset)."""
    dataset[0]  # warm-up (imports, first allocations)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(samples):
        dataset[index % len(dataset)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": samples / wall, "cpu": samples / cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=str(COCO_SAMPLE / "person_keypoints_sample.json"))
    parser.add_argument("--images", default=str(COCO_SAMPLE))
    parser.add_argument("--size", type=parse_size, default=(368, 368), help="input WxH")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    codec = Pose2DCodec()
    augment = TrainAugment(args.size, COCO17_FLIP, seed=0)
    dataset = CocoKeypoints(args.json, args.images, args.size, augment, codec.encode)
    rates = throughput(dataset, args.samples)
    print(
        f"{args.samples} samples at {args.size[0]}x{args.size[1]} from {args.json}: "
        f"{rates['wall']:.1f} samples/s wall, {rates['cpu']:.1f} samples/s per CPU-second"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
