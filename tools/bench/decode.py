"""Time a 2D pose decoder per frame: the PAF codec's (peaks + grouping + mapping back) or the
centre + offset codec's (centre peaks + offsets + refinement + pose NMS + mapping back).

Maps come from encoding synthetic people (the generator's bodies, cameras and placement) at the
network's input size, optionally with noise to look more like network output:

    python -m selecsls.tools.bench.decode --size 512x320 --people 1 5 10 --frames 50
    python -m selecsls.tools.bench.decode --head centre2d --people 1 5 10

For the PAF head a last column times the host's half of the CUDA graph path: the greedy
assembly from the slots the device computes (`heads/pose2d/slots.py`). A last line gives the
device half's cost drivers: the kernels it launches per frame (`bench.kernels`; at batch 1 on a
GPU each costs its launch) and its eager time on this CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from selecsls.datasets.synthetic_body import J
from selecsls.datasets.synthetic_people import parse_size, sample_camera, sample_people
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.peaks import find_peaks
from selecsls.heads.pose2d.registry import HEADS_2D, make_codec2d
from selecsls.heads.pose2d.slots import slot_outputs
from selecsls.tools.bench.kernels import count_kernels


def people_keypoints(rng: np.random.Generator, size: tuple[int, int], count: int) -> np.ndarray:
    """(count, 17, 3) COCO keypoints of `count` synthetic people fully projected into the image
    (v = 2 inside the image, 0 outside); redraws until exactly `count` people are placed."""
    width, height = size
    for _ in range(100):
        camera = sample_camera(rng, width, height)
        people = sample_people(rng, camera, width, count)
        if len(people) == count:
            break
    keypoints = np.zeros((len(people), 17, 3), np.float32)
    for p, person in enumerate(people):
        points = np.concatenate([person["face_uv"], person["uv"][_BODY_COCO]])
        inside = (points >= -0.5).all(1) & (points[:, 0] < width - 0.5)
        inside &= points[:, 1] < height - 0.5
        keypoints[p, :, :2] = np.where(inside[:, None], points, 0)
        keypoints[p, :, 2] = np.where(inside, 2, 0)
    return keypoints


# the generator's body joints for COCO keypoints 5..16 (shoulders .. ankles, left first)
_BODY_COCO = [
    J[f"{side}_{name}"]
    for name in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    for side in ("left", "right")
]


def _best_time(function, repeats: int) -> float:
    """Best of `repeats` runs, in CPU seconds of this process: the machine is shared, and wall
    time would count the slices other jobs take (the decoder itself is single-threaded)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def bench(codec, size, count: int, frames: int, noise: float, seed: int, repeats: int = 5) -> dict:
    """Median over frames of the per-frame time (ms, best of `repeats`) of the whole decode
    (`codec`: either 2D head's) and of keypoint peak finding alone, and the mean number of
    people found. For the PAF codec also the host's half of the CUDA graph path ("slots_ms":
    greedy assembly and mapping back from `slot_outputs`, computed here on the CPU)."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(frames):
        targets = codec.encode(people_keypoints(rng, size, count), size)
        outputs = {key: targets[key] for key in codec.output_keys}
        if noise > 0:
            for key, value in outputs.items():
                outputs[key] = value + rng.normal(0, noise, value.shape).astype(np.float32)
        maps.append(outputs)
    transform = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    codec.decode_outputs(maps[0], transform)  # warm-up
    keypoint_channels = codec.num_keypoints
    total, peaks, found = [], [], []
    for outputs in maps:
        total.append(_best_time(lambda o=outputs: codec.decode_outputs(o, transform), repeats))
        heatmaps = outputs["heatmaps"][:keypoint_channels]
        peaks.append(_best_time(lambda h=heatmaps: find_peaks(h, codec.peak_threshold), repeats))
        found.append(len(codec.decode_outputs(outputs, transform)[0]))
    row = {
        "people": count,
        "decode_ms": 1e3 * statistics.median(total),
        "peaks_ms": 1e3 * statistics.median(peaks),
        "found": statistics.mean(found),
    }
    if isinstance(codec, Pose2DCodec):
        host = [_best_time(lambda s=s: codec.decode_outputs(s, transform), repeats) for s in
                (_slots(codec, outputs) for outputs in maps)]  # fmt: skip
        row["slots_ms"] = 1e3 * statistics.median(host)
    return row


def _slots(codec: Pose2DCodec, outputs: dict) -> dict[str, np.ndarray]:
    """One frame's maps -> the device decode's slots (one image, numpy), as the graph sends."""
    maps = {key: torch.from_numpy(np.ascontiguousarray(outputs[key]))[None] for key in outputs}
    slots = slot_outputs(maps["heatmaps"], maps["pafs"], codec)
    return {key: value[0].numpy() for key, value in slots.items()}


def device_half(codec: Pose2DCodec, size: tuple[int, int], repeats: int = 5) -> dict:
    """The device decode (`slot_outputs`) of one (1, ...) frame of maps at input `size`: the
    kernels it launches and its best eager time here (ms of CPU time, on one thread: with more,
    CPU time would add up every thread's, spin-waits included)."""
    width, height = size
    shape = (height // codec.stride, width // codec.stride)
    generator = torch.Generator().manual_seed(0)
    heatmaps = torch.rand(1, codec.num_keypoints + 1, *shape, generator=generator)
    pafs = torch.randn(1, 2 * len(codec.limbs), *shape, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            slot_outputs(heatmaps, pafs, codec)  # the warm-up makes its cached constants
            kernels = sum(count_kernels(lambda: slot_outputs(heatmaps, pafs, codec)).values())
            seconds = _best_time(lambda: slot_outputs(heatmaps, pafs, codec), repeats)
    finally:
        torch.set_num_threads(threads)
    return {"kernels": kernels, "ms": 1e3 * seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=(512, 320), help="input WxH")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std on the maps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="runs per frame; the best counts")
    parser.add_argument("--head", default="xnect2d", choices=list(HEADS_2D), help="whose decoder")
    args = parser.parse_args(argv)
    codec = make_codec2d(args.head)
    width, height = args.size
    print(
        f"{args.head} decode per frame at {width}x{height} input, {args.frames} frames (best of "
        f"{args.repeats} runs each, CPU time), map noise {args.noise}"
    )
    slots = "  from device slots ms" if isinstance(codec, Pose2DCodec) else ""
    print(f"people  decode ms (median)  of which peaks ms  people found (mean){slots}")
    for count in args.people:
        row = bench(codec, args.size, count, args.frames, args.noise, args.seed, args.repeats)
        host = f"  {row['slots_ms']:20.2f}" if "slots_ms" in row else ""
        print(
            f"{row['people']:6d}  {row['decode_ms']:18.2f}  {row['peaks_ms']:17.2f}"
            f"  {row['found']:19.2f}{host}"
        )
    if isinstance(codec, Pose2DCodec):
        device = device_half(codec, args.size, args.repeats)
        print(
            f"device half (slot_outputs, {codec.max_peaks} slots): {device['kernels']} kernels "
            f"a frame, {device['ms']:.2f} ms eager on one thread of this CPU"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
