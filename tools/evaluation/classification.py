"""`tools/eval.py` for classifiers: top-1 / top-5 on an ImageNet-layout folder (root/<wnid>/*.JPEG).

For our training checkpoints the preprocessing (size, crop_pct, interpolation, mean, std) and the
class order default to the run's. Class index: a model trained here knows its classes; for a
1000-class ImageNet model the index is the sorted list of all 1000 wnids, which a partial folder
cannot reveal, so pass --class-index (a file of wnids in class order, e.g. imagenet_classes.tsv).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from selecsls.datasets.imagenet import ImageFolder, collate, read_class_index
from selecsls.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, EvalTransform
from selecsls.tools.engine.amp import amp_dtype
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
from selecsls.tools.evaluation.common import Evaluator, load_weights, run_experiment

DEFAULT_BATCH = 64


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--data", help="ImageNet-layout folder (e.g. imagenet/val)")
    group.add_argument("--image-size", type=int, help="default: the run's, else 224")
    group.add_argument("--crop-pct", type=float, help="default: the run's, else 0.875")
    group.add_argument("--interpolation", choices=tuple(INTERPOLATIONS), help="default: bicubic")
    group.add_argument("--class-index", help="file of wnids in the model's class order")
    group.add_argument("--dump-logits", help="write float32 logits (images x classes) to this .npy")


def run_settings(args: argparse.Namespace, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Data settings: the command line over the run's own config."""
    data = run_experiment(checkpoint).get("data", {})
    return {
        "image_size": args.image_size or data.get("image_size", 224),
        "crop_pct": args.crop_pct or data.get("crop_pct", 0.875),
        "interpolation": args.interpolation or data.get("interpolation", "bicubic"),
        "mean": data.get("mean", list(IMAGENET_MEAN)),
        "std": data.get("std", list(IMAGENET_STD)),
    }


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


def run(args: argparse.Namespace, checkpoint: dict[str, Any]) -> int:
    if not args.data:
        raise ValueError(f"{args.model} is a classifier: {EVALUATOR.usage}")
    settings = run_settings(args, checkpoint)
    info = init_distributed(args.device)
    try:
        model = load_weights(args, checkpoint).to(info.device).eval()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        num_classes = num_outputs(model)
        folder = Path(args.data)
        transform = EvalTransform(
            settings["image_size"], settings["crop_pct"], settings["interpolation"]
        )
        dataset = ImageFolder(folder, transform, class_list(args, checkpoint, folder, num_classes))
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
        args.batch_size or DEFAULT_BATCH,
        sampler=ShardedSampler(len(dataset), info, False, pad=False),
        num_workers=args.workers,
        collate_fn=collate,
    )
    amp = amp_dtype(args.amp, info.device)
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


EVALUATOR = Evaluator(
    add_arguments=add_arguments,
    run=run,
    usage="pass --data FOLDER (ImageNet layout: FOLDER/<class>/*.JPEG)",
)
