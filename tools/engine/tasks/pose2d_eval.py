"""Pose2DTask's evaluation (decode -> pycocotools OKS AP/AR) and its weight initialisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.heads.flip_test import predict
from selecsls.heads.pose2d.metrics import people_to_results
from selecsls.heads.pose2d.registry import HEADS_2D
from selecsls.heads.weights import check_fit, read_model_file

from ..distributed import DistInfo, gather_objects
from .base import EvalContext
from .pose2d_metrics import score_results
from .pose2d_preview import add_previews, draw_predictions, preview_count

RESULT_FILE = "val_results.json"


def evaluate_pose2d(
    task: Any,
    model: nn.Module,
    loader: Any,
    info: DistInfo,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    ctx: EvalContext | None = None,
) -> dict[str, float]:
    """Decode every val image into people, score them with pycocotools (identical on every rank).

    Writes run.out_dir/val_results.json (the scored detections, rank 0) and, when ctx has a
    TensorBoard writer (rank 0 of a training run), the first `eval.previews` images as
    `{ctx.tag}/preview` at step ctx.epoch (skeletons, heatmaps, PAFs).
    With eval.flip, each image's maps are averaged with its mirror image's (heads/flip_test.py).
    Returns {"AP", "AP50", ..., "AR_large", "people": detections kept, "images": images scored}.
    """
    codec = task.codec
    flip = bool(task.config.get("eval", {}).get("flip", False))
    previews = preview_count(task.config, info, ctx)
    results: list[dict] = []
    shown: list[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = task.to_device(batch, info.device, train=False, channels_last=channels_last)
            with torch.autocast(
                info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                outputs = predict(model, batch["images"], flip)
            maps = {k: outputs[k].cpu() for k in codec.output_keys}
            transforms = list(batch["transform"].numpy())
            people = codec.decode_batch(maps, transforms)
            for image_id, (keypoints, scores) in zip(batch["image_id"], people):
                results.extend(people_to_results(image_id, keypoints, scores))
            if len(shown) < previews:
                count = previews - len(shown)
                inputs = codec.decode_batch({k: v[:count] for k, v in maps.items()})
                shown.extend(
                    draw_predictions(
                        batch["image"][:count],
                        maps,
                        inputs,
                        task.input_size,
                        codec.keypoint_skeleton,
                    )
                )
    results = [r for part in gather_objects(results, info) for r in part]
    val = task.val_set
    out_dir = Path(task.config["run"]["out_dir"])
    result_path = out_dir / RESULT_FILE if info.is_main else None
    metrics = score_results(task, val, results, result_path, info.is_main)
    if shown and ctx is not None:
        add_previews(ctx.writer, f"{ctx.tag}/preview", shown, ctx.epoch)
    return {**metrics, "people": float(len(results)), "images": float(len(val.image_ids))}


def load_pose_backbone(model: nn.Module, source: str) -> None:
    """Initialise from a file or published name: a pose checkpoint of ours (with 2D head
    weights) loads whole; an ImageNet file loads into the backbone only (its classifier and any
    other head are dropped), strictly: a backbone mismatch is a CheckpointError."""
    state, _ = read_model_file(source)
    if any(k.startswith(tuple(f"heads.{name}." for name in HEADS_2D)) for k in state):
        check_fit(model, state, f"model.weights={source}")
        model.load_state_dict(state, strict=False)
        return
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    if not backbone:
        raise CheckpointError(f"model.weights={source}: no backbone.* weights in the file")
    check_fit(model.backbone, backbone, f"model.weights={source} (backbone part)")
    model.backbone.load_state_dict(backbone, strict=False)
    print(f"model.weights: backbone initialised from {source} ({len(backbone)} tensors)")
