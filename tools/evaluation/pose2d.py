"""`tools/eval.py` for 2D pose checkpoints: pycocotools OKS AP/AR on any COCO-format keypoint set.

    python -m selecsls.tools.eval runs/pose2d/best.pt --ann val/annotations.json \\
        --images val/images --results detections.json --json metrics.json

The checkpoint's resolved config (checkpoint["experiment"]) gives the codec settings and the
letterbox size (data.input_size); a pose model file without one (e.g. a fused copy) uses the
codec's defaults and checkpoint["input_size"] or 368x368. Images are letterboxed exactly as the
training run's validation (EvalResize), decoded by the codec and scored by the engine's own
evaluation (tools/engine/tasks/pose2d_eval.py -> heads/pose2d/metrics.py), so the figures match the
`val_AP` a run logs for the same set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from selecsls.datasets.coco import CocoKeypoints, DatasetError, collate_pose
from selecsls.datasets.keypoint_formats import FORMATS, open_keypoint_dataset
from selecsls.heads.pose2d.registry import HEADS_2D, head_of, skeleton_in
from selecsls.heads.skeletons import COCO17, Skeleton, get_skeleton
from selecsls.tools._cli import parse_size
from selecsls.tools.deploy.quantize import quantize_for_eval
from selecsls.tools.engine.amp import amp_dtype
from selecsls.tools.engine.distributed import ShardedSampler, cleanup, init_distributed
from selecsls.tools.engine.tasks.pose2d import Pose2DTask, eval_augment
from selecsls.tools.engine.tasks.pose2d_eval import RESULT_FILE, evaluate_pose2d
from selecsls.tools.evaluation.common import (
    Evaluator,
    add_pose_options,
    load_weights,
    run_experiment,
    variant_label,
)

DEFAULT_BATCH = 8
DEFAULT_SIZE = "368x368"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    add_pose_options(
        group,
        ann_help="COCO-format keypoint json (e.g. person_keypoints_val2017)",
        results_help="write the scored detections (COCO results json) here",
    )
    group.add_argument(
        "--geometry",
        choices=("letterbox", "short_side", "height"),
        help="val image geometry: letterbox into the input size, or scale the short side / "
        "height to --eval-size keeping the aspect (default: the run's eval.geometry)",
    )
    group.add_argument(
        "--eval-size", type=int, help="short side / height in pixels (default: the run's)"
    )
    group.add_argument(
        "--format",
        choices=tuple(FORMATS),
        help="annotation format of --ann, which also picks the metric (CrowdPose's AP split, "
        "MPII's PCKh; default: the run's data.format)",
    )


def data_format(args: argparse.Namespace, checkpoint: dict[str, Any]) -> str:
    """--format, else the run's data.format, else coco."""
    run_data = run_experiment(checkpoint).get("data") or {}
    return getattr(args, "format", None) or run_data.get("format") or "coco"


def eval_section(args: argparse.Namespace, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The run's eval geometry (eval.geometry, eval.size) with the command line's overrides."""
    run_eval = run_experiment(checkpoint).get("eval") or {}
    section = {"geometry": run_eval.get("geometry", "letterbox"), "size": run_eval.get("size")}
    if getattr(args, "geometry", None):
        section["geometry"] = args.geometry
    if getattr(args, "eval_size", None):
        section["size"] = args.eval_size
    return section


def input_size(args: argparse.Namespace, checkpoint: dict[str, Any]) -> tuple[int, int]:
    """--input-size, else the run's data.input_size, else the file's input_size, else 368x368."""
    if args.input_size:
        return parse_size(args.input_size, "--input-size", minimum=32)
    run_size = run_experiment(checkpoint).get("data", {}).get("input_size")
    if run_size:
        return parse_size(run_size, "data.input_size of the checkpoint", minimum=32)
    if checkpoint.get("input_size"):
        width, height = checkpoint["input_size"]
        return int(width), int(height)
    return parse_size(DEFAULT_SIZE)


def build_dataset(
    args: argparse.Namespace,
    size: tuple[int, int],
    section: dict[str, Any] | None = None,
    fmt: str = "coco",
    skeleton: Skeleton = COCO17,
) -> CocoKeypoints:
    """The evaluation set, its images letterboxed into `size` or scaled as `section` (an eval
    config section) says; DatasetError for missing files or no keypoints at all."""
    augment = eval_augment(section or {}, size)
    dataset = open_keypoint_dataset(
        fmt,
        args.ann,
        args.images,
        input_size=size,
        augment=augment,
        normalize=False,
        check_files=False,
        num_keypoints=skeleton.num_keypoints,
        skeleton_name=skeleton.name,
    )
    annotations = dataset.coco.dataset.get("annotations", [])
    count = dataset.count_field  # num_keypoints (num_keypoints_21 for Human-Art's 21 points)
    if not any(a.get(count, 0) > 0 and not a.get("iscrowd") for a in annotations):
        raise DatasetError(
            f"{args.ann}: no annotation has keypoints (num_keypoints > 0): nothing to score against"
        )
    if args.max_images is not None:
        if args.max_images < 1:
            raise ValueError(f"--max-images must be >= 1, got {args.max_images}")
        dataset.image_ids = dataset.image_ids[: args.max_images]
    dataset.check_images()  # only the images that will be read
    return dataset


def model_skeleton(checkpoint: dict[str, Any]) -> Skeleton:
    """The 2D skeleton a checkpoint's model predicts (its 2D head config; COCO-17 for models
    from before skeletons were configurable)."""
    return get_skeleton(skeleton_in(checkpoint.get("config")))


def make_task(
    checkpoint: dict[str, Any],
    size: tuple[int, int],
    out_dir: str,
    flip: bool = False,
    fmt: str = "coco",
) -> Pose2DTask:
    """The training task rebuilt from the run's codec section, for its evaluation path only.
    The skeleton is the model's own (its head config), whatever the codec section says."""
    codec = dict(run_experiment(checkpoint).get("codec", {}))
    codec["skeleton"] = model_skeleton(checkpoint).name
    config = {
        "model": {"head": head_of(checkpoint.get("config"))},
        "codec": codec,
        "data": {"input_size": f"{size[0]}x{size[1]}", "format": fmt},
        "eval": {"previews": 0, "flip": flip},  # no TensorBoard images from the command line
        "run": {"out_dir": out_dir},
    }
    return Pose2DTask(config)


def check_model(model: torch.nn.Module, source: str) -> None:
    heads = getattr(model, "config", {}).get("heads", {})
    if not any(name in heads for name in HEADS_2D):
        raise ValueError(
            f"{source}: the model has no 2D pose head ({' or '.join(HEADS_2D)}; heads: "
            f"{', '.join(heads)})"
        )


def run(args: argparse.Namespace, checkpoint: dict[str, Any]) -> int:
    if not args.ann or not args.images:
        raise ValueError(f"{args.model} is a 2D pose checkpoint: {EVALUATOR.usage}")
    size = input_size(args, checkpoint)
    fmt = data_format(args, checkpoint)
    skeleton = model_skeleton(checkpoint)
    dataset = build_dataset(args, size, eval_section(args, checkpoint), fmt, skeleton)
    results_dir = Path(args.results).resolve().parent if args.results else None
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
    info = init_distributed(args.device)
    scratch = tempfile.mkdtemp(prefix=".eval_pose2d", dir=results_dir)
    try:
        model = load_weights(args, checkpoint)
        check_model(model, args.model)
        model = model.to(info.device).eval()
        amp = amp_dtype(args.amp, info.device)
        channels_last = args.channels_last
        if args.int8_calibration:  # the int8 graph takes fp32 NCHW input
            model = quantize_for_eval(model, args.int8_calibration, size, info.device)
            amp, channels_last = None, False
        elif channels_last:
            model = model.to(memory_format=torch.channels_last)
        task = make_task(checkpoint, size, scratch, args.flip, fmt)
        task.val_set = dataset
        loader = DataLoader(
            dataset,
            args.batch_size or DEFAULT_BATCH,
            sampler=ShardedSampler(len(dataset), info, False, pad=False),
            num_workers=args.workers,
            collate_fn=collate_pose,
        )
        start = time.perf_counter()
        metrics = evaluate_pose2d(task, model, loader, info, amp, channels_last)
        metrics["images_per_s"] = len(dataset) / max(time.perf_counter() - start, 1e-9)
        if info.is_main and args.results:
            os.replace(Path(scratch) / RESULT_FILE, args.results)  # same folder: atomic
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        cleanup()
    if info.is_main:
        report(args, metrics, size)
    return 0


def report(args: argparse.Namespace, metrics: dict[str, float], size: tuple[int, int]) -> None:
    print(
        f"{args.model}{variant_label(args)} "
        f"on {args.ann}: "
        f"AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f}, AR {metrics['AR']:.3f}; "
        f"{int(metrics['images'])} images at {size[0]}x{size[1]}, "
        f"{int(metrics['people'])} people detected, {metrics['images_per_s']:.1f} images/s"
    )
    if args.json:
        payload = {
            "model": args.model,
            "ann": args.ann,
            "images_dir": args.images,
            "ema": args.ema,
            "int8_calibration": args.int8_calibration,
            "flip": args.flip,
            "input_size": list(size),
            "results": args.results,
            **metrics,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")


EVALUATOR = Evaluator(
    add_arguments=add_arguments,
    run=run,
    usage="pass --ann KEYPOINTS.json --images FOLDER (any COCO-format keypoint set)",
)
