"""Pose3DTask's data wiring: datasets, per-sample 3D targets and 2D key masks, weight loading.

Why the 3D targets are made in `collate` and not by the dataset's encoder3d: the location maps
must be supervised where the decoder will read them, i.e. at the 2D keypoints (the head at the
nose, the neck between the shoulders: `skeletons.coco17_to_joints21_2d`), which the dataset
(knowing no skeleton) cannot compute. collate runs in the loader's workers, like an encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.datasets.augment3d import Augment3D
from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.mix3d import With3DFields, collate_pose3d
from selecsls.datasets.muco import Multi3DDataset
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.loss import keypoint_masks
from selecsls.heads.pose2d.registry import STAGE1_HEADS
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.pose3d.xnect import stage1_state_from_2d
from selecsls.heads.skeletons import (
    COCO17_FLIP,
    COCO17_FROM_JOINTS21,
    JOINTS21_FLIP,
    coco17_to_joints21_2d,
)
from selecsls.heads.weights import fit_problems, read_model_file

from .pose2d import train_augment

# COCO types a person whose keypoints were made from 3D joints cannot have (the face)
NO_JOINT_SOURCE = np.array(COCO17_FROM_JOINTS21) < 0
TARGET_KEYS = (
    *("heatmaps", "pafs", "offsets", "offset_weight", "mask"),  # either 2D head's targets
    *("locmaps", "locmap_weights", "heatmap_mask", "paf_mask"),
)


def readout_points(keypoints: np.ndarray, points2d: np.ndarray) -> np.ndarray:
    """(P, 17, 3) COCO keypoints + (P, 21, 3) projected joints -> (P, 21, 3) read-out locations:
    the 2D keypoint standing for each joint where labelled (as at inference), else the joint's
    own projection."""
    from_keypoints = coco17_to_joints21_2d(np.asarray(keypoints, np.float32).reshape(-1, 17, 3))
    points2d = np.asarray(points2d, np.float32).reshape(from_keypoints.shape)
    return np.where(from_keypoints[..., 2:] > 0, from_keypoints, points2d)


def add_3d_targets(sample: dict[str, Any], codec2d: Pose2DCodec, codec3d: Pose3DCodec) -> None:
    """A training sample gains "locmaps" (63, h, w), "locmap_weights" (21, h, w) and the
    per-keypoint 2D masks "heatmap_mask" (19, h, w), "paf_mask" (38, h, w)."""
    size = (sample["image"].shape[-1], sample["image"].shape[-2])
    keypoints, points2d = sample["keypoints"].numpy(), sample["points2d"].numpy()
    joints3d, has_3d = sample["joints3d"].numpy(), sample["has_3d"].numpy()
    readout = readout_points(keypoints, points2d)
    for key, value in codec3d.encode(joints3d, readout, size, has_3d).items():
        sample[key] = torch.from_numpy(value)
    unlabelled = ~sample["coco_labelled"].numpy()[:, None] & NO_JOINT_SOURCE[None]
    region = np.concatenate([keypoints.reshape(-1, 17, 3), points2d.reshape(-1, 21, 3)], 1)
    for key, value in keypoint_masks(region, unlabelled, size, codec2d).items():
        sample[key] = torch.from_numpy(value)


def collate_stage1(
    items: list[dict[str, Any]], codec2d: Pose2DCodec, codec3d: Pose3DCodec
) -> dict[str, Any]:
    """Training items (with 2D targets) get their 3D targets and masks; all are collated."""
    for item in items:
        if "heatmaps" in item:
            add_3d_targets(item, codec2d, codec3d)
    return collate_pose3d(items)


def multi3d_train_set(task: Any, encoder: Any = None) -> Multi3DDataset:
    """The 3D-labelled training set with its augmentation (camera and 3D joints follow every
    geometric change); encoder None leaves the 2D targets to the caller (Stage II)."""
    data = task.config["data"]
    augment = Augment3D(
        task.input_size,
        scale=tuple(data["scale"]),
        rotation=data["rotation"],
        shift=data["shift"],
        flip_probability=data["hflip"],
        colour=data["colour"],
        seed=task.config["run"]["seed"],
    )
    return Multi3DDataset(
        task.path("train_json"),
        task.path("train_images"),
        task.input_size,
        augment=augment,
        encoder=encoder,
        coco_from_joints=COCO17_FROM_JOINTS21,
        flip_permutations=(COCO17_FLIP, JOINTS21_FLIP),
        normalize=False,
    )


def train_datasets(task: Any) -> Dataset:
    """The 3D set (repeated data.train_repeat times) plus, when data.coco_json is set, the
    2D-only set (repeated data.coco_repeat times): the repeats set the mixing ratio."""
    data, seed = task.config["data"], task.config["run"]["seed"]
    parts: list[Dataset] = [multi3d_train_set(task, task.codec.encode)] * data["train_repeat"]
    if data["coco_json"]:
        augment2d = train_augment(data, task.input_size, seed + 1)
        coco = CocoKeypoints(
            task.path("coco_json"),
            task.path("coco_images"),
            task.input_size,
            augment=augment2d,
            encoder=task.codec.encode,
            normalize=False,
        )
        parts += [With3DFields(coco)] * data["coco_repeat"]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def load_stage1_weights(
    model: nn.Module, source: str, key: str = "model.weights", state: dict | None = None
) -> str:
    """Initialise a Stage I model from a file or published name; returns what was loaded.

    - a Stage I (or Stage I + II) checkpoint (keys `heads.xnect3d.*` or `heads.centre3d.*`):
      Stage I loads whole;
    - a 2D checkpoint (keys `heads.xnect2d.*` or `heads.centre2d.*`, the pose2d task's): backbone
      + 2D branch into the Stage I head of the same 2D head (`STAGE1_HEADS`), the 3D branch
      keeps its initialisation (`xnect3d.stage1_state_from_2d`); another head's is a mismatch;
    - an ImageNet file: the backbone only.
    A mismatch in what is loaded is a CheckpointError naming the config key. state: the file's
    state dict (`read_model_file`) where the caller has read it already."""
    if state is None:
        state, _ = read_model_file(source)
    what = f"{key}={source}"
    state = {k: v for k, v in state.items() if not k.startswith("heads.lifting.")}
    head2d = next(
        (h for h in STAGE1_HEADS if any(k.startswith(f"heads.{h}.") for k in state)), None
    )
    if head2d is not None:
        state = stage1_state_from_2d(state, head2d, STAGE1_HEADS[head2d])
        kind = "2D checkpoint (backbone + 2D branch)"
    elif any(k.startswith(("heads.xnect3d.", "heads.centre3d.")) for k in state):
        kind = "Stage I checkpoint"
    else:
        backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
        if not backbone:
            raise CheckpointError(f"{what}: no backbone.* weights in the file")
        state, kind = backbone, "ImageNet file (backbone only)"
    expected = {k: v for k, v in model.state_dict().items() if k in state or not _optional(k, kind)}
    problems = fit_problems(_Keys(expected), state)
    if problems:
        name = model.config["backbone"]
        raise CheckpointError(f"{what} ({kind}) does not fit model {name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    print(f"{key}: {kind} {source} ({len(state)} tensors)")
    return kind


def _optional(key: str, kind: str) -> bool:
    """Model keys a source of this kind does not provide."""
    if kind.startswith("ImageNet"):
        return not key.startswith("backbone.")
    if kind.startswith("2D"):
        return ".trunk3d." in key or ".predictor3d." in key or key.startswith("heads.lifting.")
    return key.startswith("heads.lifting.")


class _Keys(nn.Module):
    """A stand-in exposing a chosen state dict to `fit_problems`."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args, **kwargs):  # fit_problems only reads keys and shapes
        return self._state


def data_paths_exist(task: Any, keys: list[tuple[str, str]]) -> None:
    """FileNotFoundError naming data.<key> for a missing file/folder."""
    data = task.config["data"]
    for key, kind in keys:
        found: Path = task.path(key)
        if not (found.is_file() if kind == "file" else found.is_dir()):
            raise FileNotFoundError(
                f"data.{key}: {kind} {found} does not exist (data.root = {data['root']})"
            )
