"""Top-1 / top-5 accuracy of a classifier on an ImageNet-layout folder (root/<wnid>/*.JPEG).

    python -m selecsls.tools.eval selecsls60b.timm --data /data/imagenet/val
    python -m selecsls.tools.eval runs/quickstart/best.pt --data runs/data/digits/val
    python -m selecsls.tools.eval runs/60b/last.pt --ema --data /data/imagenet/val \\
        --json result.json --dump-logits logits.npy
    torchrun --nproc_per_node=4 -m selecsls.tools.eval MODEL --data DIR    # shards the images

MODEL is a published weight name or any weight file (ours incl. pruned/fused, the seed's,
timm's). For our training checkpoints the preprocessing (size, crop_pct, interpolation, mean,
std) and the class order default to the run's; --ema evaluates the EMA weights they carry.
Class index: a model trained here knows its classes; for a 1000-class ImageNet model the index
is the sorted list of all 1000 wnids, which a partial folder cannot reveal, so pass
--class-index (a file of wnids in class order, e.g. imagenet_classes.tsv) for such folders.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from selecsls.backbones.checkpoint import CheckpointError, read_checkpoint
from selecsls.backbones.hub import is_published
from selecsls.datasets.imagenet import ImageFolder, collate, read_class_index
from selecsls.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, EvalTransform
from selecsls.heads import load_model
from selecsls.tools._cli import run_cli
from selecsls.tools.engine.distributed import (
    ShardedSampler,
    cleanup,
    gather_objects,
    init_distributed,
    reduce_sums,
)
from selecsls.tools.engine.tasks.classification import (
    ClassificationTask,
    predict,
    summarize,
    topk_correct,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="selecsls.tools.eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="published weight name or weight file")
    p.add_argument("--data", required=True, help="ImageNet-layout folder (e.g. imagenet/val)")
    p.add_argument("--ema", action="store_true", help="evaluate the checkpoint's EMA weights")
    p.add_argument("--image-size", type=int, help="default: the run's, else 224")
    p.add_argument("--crop-pct", type=float, help="default: the run's, else 0.875")
    p.add_argument("--interpolation", choices=tuple(INTERPOLATIONS), help="default: bicubic")
    p.add_argument("--class-index", help="file of wnids in the model's class order")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--dump-logits", help="write float32 logits (images x classes) to this .npy")
    return p.parse_args(argv)


def run_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(data settings, checkpoint extras) from the command line over the run's own config."""
    extras: dict[str, Any] = {}
    if not is_published(args.model):
        extras = read_checkpoint(args.model)
    data = (extras.get("experiment") or {}).get("data", {})
    settings = {
        "image_size": args.image_size or data.get("image_size", 224),
        "crop_pct": args.crop_pct or data.get("crop_pct", 0.875),
        "interpolation": args.interpolation or data.get("interpolation", "bicubic"),
        "mean": data.get("mean", list(IMAGENET_MEAN)),
        "std": data.get("std", list(IMAGENET_STD)),
    }
    return settings, extras


def load(args: argparse.Namespace, extras: dict[str, Any]) -> torch.nn.Module:
    model = load_model(args.model)
    if args.ema:
        if "ema_state_dict" not in extras:
            raise CheckpointError(f"{args.model}: holds no EMA weights (trained without ema)")
        model.load_state_dict(extras["ema_state_dict"])
    return model


def class_list(args, extras, folder: Path, num_classes: int) -> list[str] | None:
    """The model's class order: --class-index, else the run's, else the folder's sorted one."""
    if args.class_index:
        classes = read_class_index(args.class_index)
    elif extras.get("classes"):
        classes = list(extras["classes"])
    else:
        found = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        if found and len(found) != num_classes:
            raise ValueError(
                f"{folder} has {len(found)} class folders but the model {num_classes} classes: "
                "pass --class-index FILE (wnids in the model's class order, e.g. "
                "imagenet_classes.tsv) to map the folders onto the model's classes"
            )
        return None
    if len(classes) != num_classes:
        raise ValueError(
            f"the class index lists {len(classes)} classes, the model has {num_classes}"
        )
    return classes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings, extras = run_settings(args)
    info = init_distributed(args.device)
    try:
        model = load(args, extras).to(info.device).eval()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        num_classes = num_outputs(model)
        folder = Path(args.data)
        transform = EvalTransform(
            settings["image_size"], settings["crop_pct"], settings["interpolation"]
        )
        dataset = ImageFolder(folder, transform, class_list(args, extras, folder, num_classes))
        results = evaluate(args, model, dataset, settings, info)
    finally:
        cleanup()
    if info.is_main:
        report(args, results, settings)
    return 0


def evaluate(args, model, dataset: ImageFolder, settings: dict, info) -> dict[str, Any]:
    """Metrics (and logits in dataset order, rank 0) over the folder, each image once."""
    task = ClassificationTask({"data": {**settings, "random_erasing": 0.0}})
    loader = DataLoader(
        dataset,
        args.batch_size,
        sampler=ShardedSampler(len(dataset), info, False, pad=False),
        num_workers=args.workers,
        collate_fn=collate,
    )
    amp = torch.bfloat16 if args.amp == "bf16" else None
    sums = {"n": 0.0, "top1": 0.0, "top5": 0.0, "loss": 0.0, "skipped": 0.0}
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    start = time.perf_counter()
    for batch, logits in predict(task, model, loader, info.device, amp, args.channels_last):
        sums["skipped"] += batch["skipped"]
        if not len(batch["labels"]):
            continue
        c1, c5 = topk_correct(logits, batch["labels"])
        sums["n"] += len(batch["labels"])
        sums["top1"] += c1
        sums["top5"] += c5
        sums["loss"] += torch.nn.functional.cross_entropy(
            logits, batch["labels"], reduction="sum"
        ).item()
        if args.dump_logits:
            rows.append((batch["indices"].numpy(), logits.cpu().numpy()))
    seconds = time.perf_counter() - start
    results: dict[str, Any] = summarize(reduce_sums(sums, info))
    results["images_per_s"] = results["images"] / max(seconds, 1e-9)
    if args.dump_logits:
        gathered = gather_objects(rows, info)
        results["logits"] = assemble_logits(gathered, len(dataset), model)
    return results


def num_outputs(model) -> int:
    """Number of classes from the model's config (pruned and fused models keep it there)."""
    head = model.config.get("heads", {}).get("classification")
    if head is None:
        raise ValueError("the model has no classification head: nothing to evaluate on images")
    return int(head.get("num_classes", 1000))


def assemble_logits(per_rank: list, length: int, model) -> np.ndarray:
    """(length, classes) float32 in dataset order; rows of unreadable images are NaN."""
    out = np.full((length, num_outputs(model)), np.nan, dtype=np.float32)
    for rows in per_rank:
        for indices, logits in rows:
            out[indices] = logits
    return out


def report(args, results: dict[str, Any], settings: dict) -> None:
    logits = results.pop("logits", None)
    print(
        f"{args.model} on {args.data}: "
        f"top-1 {results['top1']:.2f}% (error {results['top1_err']:.2f}), "
        f"top-5 {results['top5']:.2f}% (error {results['top5_err']:.2f}), "
        f"{results['images']} images, {results['skipped']} skipped, "
        f"{results['images_per_s']:.1f} images/s"
    )
    if logits is not None:
        np.save(args.dump_logits, logits)
    if args.json:
        payload = {"model": args.model, "data": args.data, "ema": args.ema, **settings, **results}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main))
