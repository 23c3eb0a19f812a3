"""Evaluate a checkpoint on a dataset: the checkpoint's task picks the evaluation.

    # classifiers: top-1 / top-5 on an ImageNet-layout folder (root/<wnid>/*.JPEG)
    python -m selecsls.tools.eval selecsls60b.timm --data /data/imagenet/val
    python -m selecsls.tools.eval runs/quickstart/best.pt --data runs/data/digits/val
    python -m selecsls.tools.eval runs/60b/last.pt --ema --data /data/imagenet/val \\
        --json result.json --dump-logits logits.npy
    # 2D pose: pycocotools OKS AP/AR on any COCO-format keypoint json + image folder
    python -m selecsls.tools.eval runs/pose2d/best.pt --ann person_keypoints_val2017.json \\
        --images val2017 --results detections.json --json metrics.json
    # 3D pose (Stage I, or Stage I + II): MPJPE, PA-MPJPE, 3DPCK, AUC (+ 2D AP) on a json with
    # per-person keypoints_3d / keypoints_cam and cameras (synthetic people, MuPoTS format)
    python -m selecsls.tools.eval runs/quickstart_lifting/best.pt \\
        --ann runs/data/synthetic_people3d/val/annotations.json \\
        --images runs/data/synthetic_people3d/val/images
    torchrun --nproc_per_node=4 -m selecsls.tools.eval MODEL ...    # shards the images

MODEL is a published weight name or any weight file (ours incl. pruned/fused, the seed's,
timm's). Its task is checkpoint["experiment"]["task"] for our training checkpoints, else read
from the model's heads. Our checkpoints' data settings (classifier preprocessing and class
order, the pose codec and input size) default to the run's; --ema evaluates the EMA weights
they carry. Each task's options are listed in its own group below.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.backbones.hub import is_published
from selecsls.tools._cli import free_cores, machine_load, run_cli
from selecsls.tools.evaluation import classification as eval_classification
from selecsls.tools.evaluation import pose2d as eval_pose2d
from selecsls.tools.evaluation import pose3d as eval_pose3d
from selecsls.tools.evaluation.common import Evaluator, option_defaults, run_experiment

# task name (checkpoint["experiment"]["task"]) -> its evaluation
EVALUATORS: dict[str, Evaluator] = {
    "classification": eval_classification.EVALUATOR,
    "pose2d": eval_pose2d.EVALUATOR,
    "pose3d": eval_pose3d.EVALUATOR,  # Stage I (2D + 3D branches)
    "lifting": eval_pose3d.EVALUATOR,  # Stage I + Stage II
}

# For files without a training config: the task from the model's heads (first match wins).
HEAD_TASKS: dict[str, str] = {
    "xnect3d": "pose3d",
    "centre3d": "pose3d",
    "centre2d": "pose2d",
    "xnect2d": "pose2d",
    "classification": "classification",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="selecsls.tools.eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="published weight name or weight file")
    p.add_argument("--ema", action="store_true", help="evaluate the checkpoint's EMA weights")
    p.add_argument("--batch-size", type=int, help="default: 64 (classification), 8 (pose)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--amp",
        choices=("none", "bf16", "auto"),
        default="none",
        help="auto: bf16 on CPUs with AMX / AVX-512 BF16 and on CUDA, else none",
    )
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: the cores other jobs leave free, by the load average)",
    )
    p.add_argument("--json", help="write the metrics to this JSON file")
    for task, evaluator in EVALUATORS.items():
        evaluator.add_arguments(p.add_argument_group(f"{task} checkpoints"))
    return p


def checkpoint_task(model: str) -> tuple[str, dict[str, Any]]:
    """(task name, the file's dict) of a weight file or published name ({} for the latter)."""
    if is_published(model):
        return "classification", {}
    checkpoint = read_checkpoint(model)
    task = run_experiment(checkpoint).get("task")
    if task:
        return str(task), checkpoint
    heads = (checkpoint.get("config") or {}).get("heads") or {}
    for head, head_task in HEAD_TASKS.items():
        if head in heads:
            return head_task, checkpoint
    return "classification", checkpoint  # the seed's and timm's files are classifiers


def refuse_foreign_options(args: argparse.Namespace, task: str) -> None:
    """A ValueError when an option of another task's evaluator was given."""
    for other, evaluator in EVALUATORS.items():
        if other == task:
            continue
        for dest, default in option_defaults(evaluator).items():
            if dest in option_defaults(EVALUATORS[task]) or getattr(args, dest) == default:
                continue
            option = "--" + dest.replace("_", "-")
            raise ValueError(
                f"{args.model} is a {task} checkpoint, but {option} is an option for {other} "
                f"checkpoints; {task}: {EVALUATORS[task].usage}"
            )


def set_threads(threads: int | None) -> int:
    """Set torch's CPU threads: `threads`, or by default the free cores (`free_cores`), said on
    stderr when that is fewer than the CPUs. Returns the count."""
    import torch

    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if threads is None:
        cores, load = machine_load()
        threads = free_cores(cores, load)
        if threads < cores:
            print(
                f"eval: {threads} CPU thread(s): load {load:.1f} on {cores} cores "
                "(--threads N to choose)",
                file=sys.stderr,
            )
    torch.set_num_threads(threads)
    return threads


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    task, checkpoint = checkpoint_task(args.model)
    if task not in EVALUATORS:
        raise ValueError(
            f"{args.model}: no evaluation for task {task!r}; tasks with one: "
            f"{', '.join(EVALUATORS)}"
        )
    refuse_foreign_options(args, task)
    return EVALUATORS[task].run(args, checkpoint)


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
