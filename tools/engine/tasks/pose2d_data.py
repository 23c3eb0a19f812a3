"""The pose2d task's data: its train/val sets in any keypoint format, and more training sets of
other skeletons mapped onto the model's (`data.mix`).

A mixed-in set keeps its own format and skeleton; its people are served in the model's
annotation order (`heads.skeletons.annotation_map`: by name, MPII's thorax as the neck). Types
the set does not annotate are unlabelled: zero in the keypoints and masked in the loss over the
person's region (`heads.pose2d.loss.keypoint_masks`), so a face-less CrowdPose person does not
teach the COCO model that faces are background. When any set is mixed in, every set's samples
carry the masks (all ones for fully labelled sets), so that batches stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.keypoint_formats import get_format, open_keypoint_dataset
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.loss import keypoint_masks
from selecsls.heads.skeletons import annotation_map, get_skeleton

MIX_KEYS = {"format", "json", "images", "repeat", "skeleton"}


class LabelledEncoder:
    """The codec's encode plus per-channel loss masks for the types a data set leaves
    unlabelled: called as encoder(keypoints (P, K, 3), (W, H), ignore_mask) in the worker.

    unlabelled: (K,) bool over the model's annotation order (all False: masks of ones)."""

    def __init__(self, codec: Pose2DCodec, unlabelled: tuple[bool, ...]) -> None:
        self.codec, self.unlabelled = codec, tuple(bool(u) for u in unlabelled)

    def __call__(
        self, keypoints: np.ndarray, input_size: tuple[int, int], ignore_mask: np.ndarray
    ) -> dict[str, np.ndarray]:
        targets = self.codec.encode(keypoints, input_size, ignore_mask)
        people = np.asarray(keypoints, np.float32).reshape(len(keypoints), -1, 3)
        lacks = np.tile(np.array(self.unlabelled, bool), (len(people), 1))
        targets.update(keypoint_masks(people, lacks, input_size, self.codec))
        return targets


def check_data_formats(data: dict[str, Any], codec: Pose2DCodec) -> None:
    """ValueError naming the key: train/val in a format of another skeleton than the model's,
    or a data.mix entry with unknown keys, format or no keypoint in common with the model."""
    fmt = get_format(data["format"])
    if fmt.skeleton != codec.skeleton:
        raise ValueError(
            f"data.format={fmt.name} annotates {fmt.skeleton}, but codec.skeleton="
            f"{codec.skeleton}: set codec.skeleton={fmt.skeleton}, or train the {codec.skeleton} "
            f"model on these annotations through data.mix"
        )
    for position, entry in enumerate(data["mix"]):
        where = f"data.mix[{position}]"
        unknown = sorted(set(entry) - MIX_KEYS)
        if unknown or not {"format", "json", "images"} <= set(entry):
            raise ValueError(
                f"{where}: needs format, json and images (optional: repeat, skeleton); got "
                f"{sorted(entry)}"
            )
        try:
            get_format(entry["format"])
        except ValueError as err:
            raise ValueError(f"{where}.format: {err}") from None
        mapping = mix_mapping(entry, codec)
        if all(i < 0 for i in mapping):
            raise ValueError(f"{where}: no keypoint in common with {codec.skeleton}")
        if int(entry.get("repeat", 1)) < 1:
            raise ValueError(f"{where}.repeat must be >= 1, got {entry['repeat']}")


def mix_mapping(entry: dict[str, Any], codec: Pose2DCodec) -> tuple[int, ...]:
    """For each keypoint of the model's annotation order, the entry's annotation index (-1)."""
    source = get_skeleton(entry.get("skeleton") or get_format(entry["format"]).skeleton)
    return annotation_map(source, codec.keypoint_skeleton)


def train_set(
    data: dict[str, Any], codec: Pose2DCodec, input_size: tuple[int, int], augment: Any
) -> Dataset:
    """The training set: data.train_json in data.format, plus every data.mix entry mapped onto
    the model's skeleton and repeated `repeat` times."""
    root = Path(data["root"])
    mixed = bool(data["mix"])
    fully_labelled = (False,) * codec.keypoint_skeleton.num_keypoints
    main = open_keypoint_dataset(
        data["format"],
        root / data["train_json"],
        root / data["train_images"],
        input_size=input_size,
        augment=augment,
        encoder=LabelledEncoder(codec, fully_labelled) if mixed else codec.encode,
        normalize=False,  # uint8 through the loader; normalised on the device
    )
    if not mixed:
        return main
    parts: list[Dataset] = [main]
    for entry in data["mix"]:
        mapping = mix_mapping(entry, codec)
        extra = open_keypoint_dataset(
            entry["format"],
            root / entry["json"],
            root / entry["images"],
            input_size=input_size,
            augment=augment,  # flips in the model's order: keypoints are mapped before it
            encoder=LabelledEncoder(codec, tuple(i < 0 for i in mapping)),
            normalize=False,
        )
        extra.map_keypoints(mapping)
        parts += [extra] * int(entry.get("repeat", 1))
    return ConcatDataset(parts)


def val_set(
    data: dict[str, Any], codec: Pose2DCodec, input_size: tuple[int, int], augment: Any
) -> CocoKeypoints:
    """The evaluation set: data.val_json in data.format, checked against the model's skeleton."""
    root = Path(data["root"])
    skeleton = codec.keypoint_skeleton
    return open_keypoint_dataset(
        data["format"],
        root / data["val_json"],
        root / data["val_images"],
        input_size=input_size,
        augment=augment,
        normalize=False,
        num_keypoints=skeleton.num_keypoints,
        skeleton_name=skeleton.name,
    )
