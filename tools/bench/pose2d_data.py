"""Training data pipeline throughput for 2D pose: samples/s of one worker (load, augment, encode).

One worker = the main process, as a DataLoader worker of the pose2d task runs it: read the JPEG
and the ignore mask, augment (scale, rotation, crop/pad, flip, colour), encode heatmaps + PAFs +
mask, hand over tensors (uint8 images, normalised later on the device, as the task does;
--normalize adds the float normalisation to the worker). Threads are pinned to --threads (1, as a
loader worker should be). CPU time (time.process_time) is the figure to quote on a shared
machine; wall time is printed beside it.

    python -m selecsls.tools.bench.pose2d_data                       # COCO sample, 368x368
    python -m selecsls.tools.bench.pose2d_data --json A.json --images DIR --size 368x368
    python -m selecsls.tools.bench.pose2d_data --against f25c3fa     # before/after table
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import torch

from selecsls.datasets.augment import TrainAugment
from selecsls.datasets.coco import CocoKeypoints
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.skeletons import COCO17_FLIP
from selecsls.tools._cli import parse_size, run_cli

COCO_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"
STAGES = ("load", "augment", "encode", "sample")


def throughput(dataset: CocoKeypoints, samples: int) -> dict[str, float]:
    """Wall and CPU samples/s of whole items over `samples` items (cycling the dataset)."""
    dataset[0]  # warm-up (imports, first allocations)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(samples):
        dataset[index % len(dataset)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": samples / wall, "cpu": samples / cpu}


def time_sample(dataset: CocoKeypoints, index: int) -> tuple[float, ...]:
    """CPU milliseconds of one sample's stages: load, augment, encode, and a whole item."""
    i = index % len(dataset)
    start = time.process_time()
    image, keypoints, mask, _ = dataset.load(i)
    loaded = time.process_time()
    image, keypoints, mask = dataset.augment(image, keypoints, mask)
    augmented = time.process_time()
    dataset.encoder(keypoints, dataset.input_size, mask)
    encoded = time.process_time()
    dataset[i]
    done = time.process_time()
    marks = (loaded - start, augmented - loaded, encoded - augmented, done - encoded)
    return tuple(seconds * 1000 for seconds in marks)


def stage_times(datasets: list[CocoKeypoints], samples: int) -> list[dict[str, float]]:
    """Mean CPU ms per stage of each dataset; with several, they alternate sample by sample (the
    starting one rotating), so a change of machine load hits all of them alike."""
    times = [np.zeros((samples, len(STAGES))) for _ in datasets]
    for index in range(samples):
        order = list(range(len(datasets)))
        order = order[index % len(order) :] + order[: index % len(order)]
        for k in order:
            times[k][index] = time_sample(datasets[k], index)
    return [dict(zip(STAGES, t.mean(0).tolist())) for t in times]


def dataset_at(revision: str, args: argparse.Namespace) -> CocoKeypoints:
    """The same dataset built from the augment / coco / codec2d code of a git revision."""
    root = Path(__file__).resolve().parents[1]
    modules = {}
    for package, name in (("datasets", "augment"), ("datasets", "coco"), ("heads", "codec2d")):
        try:
            source = subprocess.run(
                ["git", "-C", str(root), "show", f"{revision}:{package}/{name}.py"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            message = getattr(err, "stderr", None) or err
            raise ValueError(
                f"--against {revision}: cannot read {package}/{name}.py: {message}"
            ) from None
        # a sibling module of the package, so its relative imports resolve
        module = types.ModuleType(f"selecsls.{package}._at_{name}")
        module.__package__ = f"selecsls.{package}"
        sys.modules[module.__name__] = module  # dataclasses look their module up there
        exec(compile(source, f"{revision}:{package}/{name}.py", "exec"), module.__dict__)
        modules[name] = module
    augment = modules["augment"].TrainAugment(args.size, COCO17_FLIP, seed=0)
    encoder = modules["codec2d"].Pose2DCodec().encode
    return modules["coco"].CocoKeypoints(
        args.json, args.images, args.size, augment, encoder, normalize=args.normalize
    )


def compare(current: CocoKeypoints, args: argparse.Namespace) -> None:
    """Print the per-stage CPU ms of --against's code and of the current code, interleaved."""
    before = dataset_at(args.against, args)
    before[0]
    old, new = stage_times([before, current], args.samples)
    print(f"\nmean CPU ms per sample, {args.against} vs working tree (interleaved):")
    print("| stage | before | after | speed-up |\n|---|---:|---:|---:|")
    for name in STAGES:
        print(f"| {name} | {old[name]:.2f} | {new[name]:.2f} | {old[name] / new[name]:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=str(COCO_SAMPLE / "person_keypoints_sample.json"))
    parser.add_argument("--images", default=str(COCO_SAMPLE))
    parser.add_argument("--size", type=parse_size, default=(368, 368), help="input WxH")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    parser.add_argument("--normalize", action="store_true", help="float-normalise in the worker")
    parser.add_argument("--against", help="git revision: also time its pipeline code, interleaved")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    codec = Pose2DCodec()
    augment = TrainAugment(args.size, COCO17_FLIP, seed=0)
    dataset = CocoKeypoints(
        args.json, args.images, args.size, augment, codec.encode, normalize=args.normalize
    )
    rates = throughput(dataset, args.samples)
    (stages,) = stage_times([dataset], args.samples)
    print(
        f"{args.samples} samples at {args.size[0]}x{args.size[1]} from {args.json}: "
        f"{rates['cpu']:.1f} samples/s per CPU-second, {rates['wall']:.1f} samples/s wall"
    )
    print(
        "mean CPU ms per sample: "
        + ", ".join(f"{name} {stages[name]:.2f}" for name in STAGES[:3])
        + f", whole item {stages['sample']:.2f}"
    )
    if args.against:
        compare(dataset, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
