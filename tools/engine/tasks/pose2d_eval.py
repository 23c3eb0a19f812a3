"""Pose2DTask's evaluation (decode -> pycocotools OKS AP/AR) and its weight initialisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.heads.weights import check_fit, read_model_file
from selecsls.tools.coco_eval import evaluate_keypoints, people_to_results

from ..distributed import DistInfo, gather_objects
from .pose2d_preview import draw_predictions

RESULT_FILE = "val_results.json"


def evaluate_pose2d(
    task: Any,
    model: nn.Module,
    loader: Any,
    info: DistInfo,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    tag: str = "val",
    step: int = 0,
) -> dict[str, float]:
    """Decode every val image into people, score them with pycocotools (identical on every rank).

    Writes run.out_dir/val_results.json (the scored detections, rank 0) and, for the first
    `eval.previews` images, TensorBoard images `{tag}/preview` (skeletons, heatmaps, PAFs).
    Returns {"AP", "AP50", ..., "AR_large", "people": detections kept, "images": images scored}.
    """
    codec, previews = task.codec, task.config["eval"]["previews"]
    results: list[dict] = []
    shown: list[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = task.to_device(batch, info.device, train=False, channels_last=channels_last)
            with torch.autocast(
                info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                outputs = model(batch["images"])
            maps = {k: outputs[k].float().cpu() for k in ("heatmaps", "pafs")}
            transforms = list(batch["transform"].numpy())
            people = codec.decode_batch(maps, transforms)
            for image_id, (keypoints, scores) in zip(batch["image_id"], people):
                results.extend(people_to_results(image_id, keypoints, scores))
            if info.is_main and len(shown) < previews:
                count = previews - len(shown)
                inputs = codec.decode_batch({k: v[:count] for k, v in maps.items()})
                shown.extend(
                    draw_predictions(batch["image"][:count], maps, inputs, task.input_size)
                )
    results = [r for part in gather_objects(results, info) for r in part]
    val = task.val_set
    out_dir = Path(task.config["run"]["out_dir"])
    metrics = evaluate_keypoints(
        val.coco,
        results,
        result_path=out_dir / RESULT_FILE if info.is_main else None,
        image_ids=val.image_ids,
        verbose=info.is_main,
    )
    if shown:
        write_previews(out_dir, f"{tag}/preview", shown, step)
    return {**metrics, "people": float(len(results)), "images": float(len(val.image_ids))}


_WRITERS: dict[str, Any] = {}


def write_previews(out_dir: Path, tag: str, images: list[np.ndarray], step: int) -> None:
    """(H, W, 3) uint8 RGB panels -> TensorBoard images under out_dir/tb (rank 0 only).

    The engine's RunLog is not handed to tasks, so evaluation keeps its own writer on the same
    folder (TensorBoard merges the event files of one folder)."""
    from torch.utils.tensorboard import SummaryWriter  # import cost only when used

    key = str(out_dir / "tb")
    if key not in _WRITERS:
        _WRITERS[key] = SummaryWriter(key, filename_suffix=".pose2d_previews")
    writer = _WRITERS[key]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    writer.add_images(tag, batch, step)
    writer.flush()


def load_pose_backbone(model: nn.Module, source: str) -> None:
    """Initialise from a file or published name: a pose checkpoint of ours (with xnect2d head
    weights) loads whole; an ImageNet file loads into the backbone only (its classifier and any
    other head are dropped), strictly: a backbone mismatch is a CheckpointError."""
    state, _ = read_model_file(source)
    if any(k.startswith("heads.xnect2d.") for k in state):
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
