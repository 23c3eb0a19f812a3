"""The 2D keypoint dataset formats as data: which loader, which skeleton, which quirks.

One row per format: the default skeleton's NAME (a plain string: datasets import no skeleton
module; tools resolve it with heads.skeletons.get_skeleton) and its keypoint count, the
annotation field holding the keypoints, how file names map onto the image folder, and the loader
class. `open_keypoint_dataset` builds a dataset from a row; any keyword overrides the row.

Prefix handling: "" joins file_name to the image folder as written; "auto" strips the shortest
leading run of path parts that makes the files exist (`datasets.coco.detect_prefix`), so
Human-Art ("HumanArt/images/...") and PoseTrack ("images/val/...") load whether the image folder
given is the dataset root or the folder the names point into.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .coco import CocoKeypoints
from .mpii import MpiiKeypoints


@dataclass(frozen=True)
class KeypointFormat:
    """One dataset format: its default skeleton, field, prefix handling and loader."""

    name: str
    skeleton: str  # default skeleton name (heads.skeletons registry)
    num_keypoints: int  # that skeleton's keypoint count, checked against the json
    loader: type[CocoKeypoints]
    keypoints_field: str = "keypoints"
    strip_prefix: str = ""  # "" as written, "auto" detected, or a literal prefix
    notes: str = ""


FORMATS: dict[str, KeypointFormat] = {
    f.name: f
    for f in (
        KeypointFormat("coco", "coco17", 17, CocoKeypoints, notes="person_keypoints_*.json"),
        KeypointFormat(
            "crowdpose",
            "crowdpose14",
            14,
            CocoKeypoints,
            notes="per-image crowdIndex: dataset.crowd_indices() for the easy/medium/hard AP",
        ),
        KeypointFormat(
            "mpii",
            "mpii16",
            16,
            MpiiKeypoints,
            notes="json list of people (joints, joints_vis, center, scale); 1-based coordinates",
        ),
        KeypointFormat(
            "aic", "aic14", 14, CocoKeypoints, notes="AI Challenger in COCO format (14 points)"
        ),
        KeypointFormat(
            "posetrack18",
            "posetrack18",
            17,
            CocoKeypoints,
            strip_prefix="auto",
            notes="file_name images/<split>/<video>/<frame>.jpg; polygon ignore_regions_x/_y; "
            "frames with is_labeled false are skipped",
        ),
        KeypointFormat(
            "humanart",
            "humanart21",
            21,
            CocoKeypoints,
            keypoints_field="keypoints_21",
            strip_prefix="auto",
            notes="file_name HumanArt/images/...; 'keypoints' holds the 17 COCO points only",
        ),
        KeypointFormat("ochuman", "coco17", 17, CocoKeypoints, notes="OCHuman in COCO format"),
    )
}


def get_format(name: str) -> KeypointFormat:
    """The row of a format name; ValueError listing the valid names."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown keypoint dataset format {name!r}; choose one of: {', '.join(FORMATS)}"
        ) from None


def skeletons_with(num_keypoints: int) -> list[str]:
    """Default skeleton names of the formats with that many keypoints, in table order (for the
    hint of a count-mismatch error)."""
    names = [f.skeleton for f in FORMATS.values() if f.num_keypoints == num_keypoints]
    return list(dict.fromkeys(names))


def open_keypoint_dataset(
    format: str, json_path: str | Path, image_dir: str | Path, **kwargs: Any
) -> CocoKeypoints:
    """The dataset of one format with its quirks set: num_keypoints, skeleton_name,
    keypoints_field and strip_prefix from the row, then `kwargs` (input_size, augment, encoder,
    image_ids, check_files, normalize, or any row value to override; a caller configured for
    another skeleton passes its num_keypoints and skeleton_name, and a mismatching json is one
    DatasetError)."""
    spec = get_format(format)
    options: dict[str, Any] = {
        "num_keypoints": spec.num_keypoints,
        "skeleton_name": spec.skeleton,
        "strip_prefix": spec.strip_prefix,
    }
    if spec.loader is not MpiiKeypoints:  # MPII has no keypoints field to choose
        options["keypoints_field"] = spec.keypoints_field
    options.update(kwargs)
    return spec.loader(json_path, image_dir, **options)
