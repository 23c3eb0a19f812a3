"""`tools/eval.py` for 3D pose checkpoints (tasks pose3d and lifting): MuPoTS-style 3D metrics.

    python -m selecsls.tools.eval runs/quickstart_lifting/best.pt \\
        --ann runs/data/synthetic_people3d/val/annotations.json \\
        --images runs/data/synthetic_people3d/val/images --json metrics.json
    python -m selecsls.tools.eval runs/xnect/best.pt --ann MuPoTS-3D.json \\
        --images MultiPersonTestSet --readout-only     # Stage I's location maps, no Stage II

--ann is a MuCo/MuPoTS-format json (per-person keypoints_cam in mm, per-image f and c) or the
synthetic set's; the images are letterboxed as in the training run's validation, and the metrics
are the engine's own (tools/engine/tasks/pose3d_eval.py): MPJPE, PA-MPJPE, 3DPCK@150mm and AUC
over matched people, 3DPCK/AUC over all people, plus the 2D OKS AP when the json is COCO-format.
A Stage I + II checkpoint lifts every detected person with Stage II ("readout_*": Stage I alone).
The 2D options (--ann, --images, --input-size, --results, --max-images) are shared with the pose2d
evaluator, so they are added once, by whichever evaluator comes first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist

from selecsls.tools._cli import parse_size
from selecsls.tools.engine.distributed import cleanup
from selecsls.tools.engine.tasks.pose3d_eval import evaluate_pose3d_checkpoint
from selecsls.tools.evaluation.common import (
    Evaluator,
    add_once,
    add_pose_options,
    run_experiment,
    variant_label,
)

DEFAULT_BATCH = 8


def add_arguments(group: argparse._ArgumentGroup) -> None:
    add_pose_options(
        group,
        ann_help="the val json (COCO-format keypoints, or MuCo/MuPoTS format)",
        results_help="write the scored 2D detections (COCO results json) here",
    )
    add_once(
        group,
        "--readout-only",
        action="store_true",
        help="3D pose: ignore Stage II, read 3D from Stage I's location maps",
    )


def run(args: argparse.Namespace, checkpoint: dict[str, Any]) -> int:
    if not args.ann or not args.images:
        raise ValueError(f"{args.model} is a 3D pose checkpoint: {EVALUATOR.usage}")
    size = None
    if args.input_size:
        size = parse_size(args.input_size, "--input-size", minimum=32)
    elif run_experiment(checkpoint).get("data", {}).get("input_size"):
        size = parse_size(run_experiment(checkpoint)["data"]["input_size"], "data.input_size")
    start = time.perf_counter()
    is_main = True
    try:
        metrics = evaluate_pose3d_checkpoint(
            args.model,
            args.ann,
            args.images,
            input_size=size,
            batch_size=args.batch_size or DEFAULT_BATCH,
            max_images=args.max_images,
            ema=args.ema,
            readout_only=args.readout_only,
            amp=args.amp,
            channels_last=args.channels_last,
            device=args.device,
            workers=args.workers,
            result_path=args.results,
            int8_calibration=args.int8_calibration,
            flip=args.flip,
        )
        is_main = not dist.is_initialized() or dist.get_rank() == 0
    finally:
        cleanup()
    metrics["images_per_s"] = metrics["images"] / max(time.perf_counter() - start, 1e-9)
    if is_main:
        report(args, metrics)
    return 0


def report(args: argparse.Namespace, metrics: dict[str, float]) -> None:
    ap = f", 2D AP {metrics['AP']:.3f}" if "AP" in metrics else ""
    print(
        f"{args.model}{variant_label(args)} "
        f"on {args.ann}: "
        f"3DPCK {metrics['pck']:.1f} (all people {metrics['pck_all']:.1f}), "
        f"AUC {metrics['auc']:.1f}, MPJPE {metrics['mpjpe']:.1f} mm, "
        f"PA-MPJPE {metrics['pa_mpjpe']:.1f} mm{ap}; {int(metrics['people_matched'])} of "
        f"{int(metrics['people_gt'])} people matched, {int(metrics['images'])} images, "
        f"{metrics['images_per_s']:.1f} images/s"
    )
    if args.json:
        payload = {
            "model": args.model,
            "ann": args.ann,
            "ema": args.ema,
            "int8_calibration": args.int8_calibration,
            "flip": args.flip,
            **metrics,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")


EVALUATOR = Evaluator(
    add_arguments=add_arguments,
    run=run,
    usage="pass --ann VAL.json --images FOLDER (MuCo/MuPoTS format or the synthetic set)",
)
