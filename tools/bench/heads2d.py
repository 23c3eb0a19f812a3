"""Where a trained 2D pose network's AP goes: its decoded AP beside oracle splits, and the
median pixel error per keypoint, for either 2D head (PAF or centre + offset).

Each checkpoint's val set (its run's data section, or --ann / --images) is letterboxed to the
run's input size and passed through the network (flip test as the run evaluated). The maps are
decoded as they are, then with one output swapped for the ground truth's encoding:
- centre + offset head: "true centres" (the centre channel), "true offsets";
- PAF head: "true heatmaps", "true PAFs" (grouping with ideal fields).
Median error: for each labelled val person, the detection of its image with the highest OKS,
and per keypoint type the median distance (original pixels) over the labelled keypoints that
detection has; "missed" is the share of labelled keypoints it lacks (the PAF decoder leaves
keypoints out; the centre decoder regresses all) or that have no detection at all.

    python -m selecsls.tools.bench.heads2d runs/quickstart_pose2d/last.pt \
        runs/quickstart_pose2d_centre/last.pt
    python -m selecsls.tools.bench.heads2d runs/quickstart_pose2d_centre/last.pt \
        --set refine_radius=2                     # decode with other codec settings
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selecsls.datasets.augment import EvalResize
from selecsls.datasets.coco import IMAGENET_MEAN, IMAGENET_STD, CocoKeypoints
from selecsls.heads import load_model
from selecsls.heads.flip_test import predict
from selecsls.heads.pose2d.metrics import evaluate_keypoints, people_to_results
from selecsls.heads.pose2d.registry import head_of, make_codec2d, skeleton_in
from selecsls.tools._cli import run_cli
from selecsls.tools.evaluation.common import run_experiment

# output swapped for the ground truth's -> variant name, per head
ORACLES = {
    "xnect2d": {"heatmaps": "true heatmaps", "pafs": "true PAFs"},
    "centre2d": {"centre": "true centres", "offsets": "true offsets"},
}


def open_val(experiment: dict, codec: Any, ann: str | None, images: str | None) -> CocoKeypoints:
    """The run's val set at its input size, with the ground truth encoded by `codec`."""
    data = experiment.get("data", {})
    root = Path(data.get("root", "."))
    ann_path = Path(ann) if ann else root / data["val_json"]
    image_dir = Path(images) if images else root / data["val_images"]
    width, height = (int(v) for v in data.get("input_size", "368x368").split("x"))
    return CocoKeypoints(
        ann_path, image_dir, (width, height), augment=EvalResize((width, height)),
        encoder=codec.encode, normalize=False,
    )  # fmt: skip


def network_maps(model: torch.nn.Module, image: torch.Tensor, flip: bool) -> dict:
    """(3, H, W) uint8 -> {output name: (C, h, w) float32 numpy} (fp32, optionally flip test)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    images = (image[None].float() / 255 - mean) / std
    with torch.no_grad():
        outputs = predict(model, images, flip)
    return {k: v[0].numpy() for k, v in outputs.items()}


def with_truth(outputs: dict, targets: dict, swap: str) -> dict:
    """The outputs with one of them replaced by the ground truth's encoding."""
    swapped = dict(outputs)
    if swap == "centre":
        swapped["heatmaps"] = outputs["heatmaps"].copy()
        swapped["heatmaps"][-1] = targets["heatmaps"][-1]
    else:
        swapped[swap] = targets[swap]
    return swapped


def analyse(
    path: str,
    ann: str | None,
    images: str | None,
    flip: bool | None,
    overrides: dict[str, float] | None = None,
) -> dict:
    """One checkpoint -> {"head", "AP" per variant, "errors": {keypoint: median px}}; the codec
    is the run's, with `overrides` (decoding settings) applied."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    experiment = run_experiment(checkpoint)
    head = head_of(checkpoint.get("config"))
    settings = {**experiment.get("codec", {}), "skeleton": skeleton_in(checkpoint.get("config"))}
    settings.update(overrides or {})
    codec = make_codec2d(head, settings)
    flip = bool(experiment.get("eval", {}).get("flip", False)) if flip is None else flip
    model = load_model(path).eval()
    dataset = open_val(experiment, codec, ann, images)
    variants = {"decoded": [], **{name: [] for name in ORACLES[head].values()}}
    for index in range(len(dataset)):
        sample = dataset[index]
        outputs = network_maps(model, sample["image"], flip)
        targets = {k: v.numpy() for k, v in sample.items() if k in codec.target_keys}
        transform = sample["transform"].numpy()
        image_id = sample["image_id"]
        variants["decoded"] += people_to_results(
            image_id, *codec.decode_outputs(outputs, transform)
        )
        for swap, name in ORACLES[head].items():
            people = codec.decode_outputs(with_truth(outputs, targets, swap), transform)
            variants[name] += people_to_results(image_id, *people)
    sigmas = codec.keypoint_skeleton.sigma_array
    scores = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, results in variants.items():
            stats = evaluate_keypoints(
                dataset.coco, results, Path(scratch) / "r.json", sigmas=sigmas, verbose=False
            )
            scores[name] = {k: stats[k] for k in ("AP", "AP50", "AR")}
    errors = median_errors(dataset, variants["decoded"], sigmas, codec.keypoint_skeleton.keypoints)
    return {"path": path, "head": head, "scores": scores, "errors": errors}


def median_errors(dataset, results, sigmas, names) -> dict[str, float]:
    """Per keypoint name, the median distance (original pixels) of each labelled val person's
    keypoint to the best-OKS detection of its image."""
    by_image: dict[int, list[np.ndarray]] = {}
    for result in results:
        by_image.setdefault(result["image_id"], []).append(
            np.array(result["keypoints"], np.float32).reshape(-1, 3)
        )
    distances: list[list[float]] = [[] for _ in names]
    missed = labelled_total = 0
    coco = dataset.coco
    for image_id in dataset.image_ids:
        detections = by_image.get(image_id, [])
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            truth = np.array(ann["keypoints"], np.float32).reshape(-1, 3)
            labelled = truth[:, 2] > 0
            labelled_total += int(labelled.sum())
            if not labelled.any() or not detections:
                missed += int(labelled.sum())
                continue
            best = max(detections, key=lambda d: oks(d, truth, ann["area"], sigmas))
            gaps = np.linalg.norm(best[:, :2] - truth[:, :2], axis=1)
            found = labelled & (best[:, 2] > 0)
            missed += int((labelled & ~found).sum())
            for k in np.flatnonzero(found):
                distances[k].append(float(gaps[k]))
    errors = {name: float(np.median(d)) if d else float("nan") for name, d in zip(names, distances)}
    return {**errors, "missed %": 100.0 * missed / max(labelled_total, 1)}


def oks(detection: np.ndarray, truth: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO's object keypoint similarity of one detection (K, 3) to one labelled person."""
    labelled = truth[:, 2] > 0
    squared = ((detection[:, :2] - truth[:, :2]) ** 2).sum(1)
    similarity = np.exp(-squared / (2 * max(area, 1e-6) * (2 * sigmas) ** 2))
    return float(similarity[labelled].mean())


def report(rows: list[dict]) -> str:
    """Markdown: AP / AP50 / AR per variant, then median pixel errors per keypoint."""
    lines = ["| checkpoint | head | variant | AP | AP50 | AR |", "|---|---|---|---:|---:|---:|"]
    for row in rows:
        for name, score in row["scores"].items():
            lines.append(
                f"| {row['path']} | {row['head']} | {name} | {score['AP']:.3f} | "
                f"{score['AP50']:.3f} | {score['AR']:.3f} |"
            )
    names = list(rows[0]["errors"])
    lines += ["", "| checkpoint | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows:
        lines.append(
            f"| {row['path']} | " + " | ".join(f"{row['errors'][n]:.1f}" for n in names) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="pose2d run checkpoints (last.pt, best.pt)")
    parser.add_argument("--ann", help="val keypoint json (default: the run's data.val_json)")
    parser.add_argument("--images", help="its image folder (default: the run's data.val_images)")
    parser.add_argument(
        "--flip", choices=("run", "on", "off"), default="run", help="flip test (default: the run's)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE",
        help="codec settings to decode with instead of the run's (e.g. refine_radius=2)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
    flip = None if args.flip == "run" else args.flip == "on"
    rows = [analyse(path, args.ann, args.images, flip, overrides) for path in args.checkpoints]
    print(report(rows))
    return 0


def parse_overrides(items: list[str]) -> dict[str, float]:
    """["refine_radius=2", ...] -> {"refine_radius": 2.0}; ValueError naming a bad item."""
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = float(value)
        except ValueError:
            raise ValueError(f"--set {item}: expected KEY=NUMBER") from None
    return overrides


def cli() -> int:
    """The console entry: user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
