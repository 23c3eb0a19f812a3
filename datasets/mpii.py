"""MPII Human Pose in the json list layout most PyTorch pose codebases use, for bottom-up training.

The json is a list with one entry per annotated person: "image" (file name), "joints" (K, 2)
pixel coordinates, "joints_vis" (K,) 1 where the joint is labelled, "center" (2,) and "scale"
(person height / 200 px). `to_coco` groups the entries by image into a COCO-format dict, and
`MpiiKeypoints` is a `CocoKeypoints` over that dict, so training and evaluation treat both alike.

Coordinates: this json carries MPII's own Matlab coordinates, 1-based (the top-left pixel centre
is (1, 1)); the HRNet reference loader subtracts 1 from joints and center, and the PCKh evaluators
of HRNet and mmpose add 1 to 0-based predictions before comparing them with the ground truth.
With one_based=True (the default) we subtract 1, so keypoints follow this package's convention
(pixel centres at integer coordinates, the top-left one at (0, 0)); one_based=False keeps the
numbers as they are, for a json already converted to 0-based.

MPII annotates only some of the people in an image and marks no crowd or ignore regions: the
ignore mask is all zeros, so unannotated people train as background (as in the references).
The dataset knows no skeleton: joint names come from the caller (the mpii16 skeleton's names).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from .coco import CocoKeypoints, DatasetError, coco_from_dict

# MPII's "scale" is the person's height in units of 200 px
PIXEL_STD = 200.0


def read_mpii_json(path: str | Path) -> list[dict]:
    """The entry list of an MPII json; DatasetError when missing, not json or not a list."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not a json file ({err})") from None
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: an MPII json is a list of person entries, got a {type(data).__name__} "
            "(a COCO-format json? use CocoKeypoints)"
        )
    return data


def entry_arrays(entry: Any, index: int, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry's joints (K, 2) float64, joints_vis (K,) and center (2,), checked; DatasetError
    naming the file, the entry and the key otherwise."""
    where = f"{source}: entry {index}"
    if not isinstance(entry, dict):
        raise DatasetError(f"{where} is a {type(entry).__name__}, not a dict")
    for key in ("image", "joints", "joints_vis", "center", "scale"):
        if key not in entry:
            raise DatasetError(f"{where} has no {key!r} (a test-set json without joints?)")
    if not isinstance(entry["image"], str) or not entry["image"]:
        raise DatasetError(f"{where}: 'image' must be a file name, got {entry['image']!r}")
    scale = entry["scale"]
    if not isinstance(scale, Real) or not scale > 0:
        raise DatasetError(f"{where}: 'scale' must be a positive number, got {scale!r}")
    joints = numeric(entry["joints"], where, "joints")
    visible = numeric(entry["joints_vis"], where, "joints_vis")
    center = numeric(entry["center"], where, "center")
    if joints.ndim != 2 or joints.shape[1] != 2:
        raise DatasetError(f"{where}: 'joints' must be (K, 2), got shape {joints.shape}")
    if visible.shape != (len(joints),):
        raise DatasetError(
            f"{where}: 'joints_vis' must hold one flag per joint ({len(joints)}), got shape "
            f"{visible.shape}"
        )
    if center.shape != (2,):
        raise DatasetError(f"{where}: 'center' must be (x, y), got shape {center.shape}")
    return joints, visible, center


def numeric(value: Any, where: str, key: str) -> np.ndarray:
    """float64 array of a json value; DatasetError naming where and key for non-numbers."""
    try:
        return np.asarray(value, np.float64)
    except (ValueError, TypeError):
        raise DatasetError(f"{where}: {key!r} must be numbers, got {value!r}") from None


def to_coco(
    entries: list[dict] | str | Path,
    image_dir: str | Path | None = None,
    keypoint_names: Sequence[str] | None = None,
    one_based: bool = True,
    source: str | Path | None = None,
) -> dict:
    """MPII entries (or the path of their json) -> a COCO-format dict for OKS-style tools.

    images: one per unique image name, id = its index in the sorted names + 1 (deterministic,
    independent of the entries' order), "file_name" the name, and "width" / "height" when
    image_dir is given (read from the files' headers). annotations: one per entry, id = entry
    index + 1, "keypoints" K * (x, y, v) with v = 2 where joints_vis > 0 and (0, 0, 0) elsewhere,
    "num_keypoints", "bbox" the square of side 200 * scale centred on center (MPII gives no box;
    not clipped to the image), "area" that box's area, "iscrowd" 0, and the entry's "center"
    and "scale". Coordinates are 0-based unless one_based=False (see the module docstring).
    categories: one "person" category with keypoint_names (default "joint_0" ... "joint_{K-1}").
    """
    if isinstance(entries, (str, Path)):
        source = source or entries
        entries = read_mpii_json(entries)
    source = str(source or "<MPII entries>")
    if not entries:
        raise DatasetError(f"{source}: no entries")
    arrays = [entry_arrays(entry, i, source) for i, entry in enumerate(entries)]
    count = len(arrays[0][0])
    for index, (joints, _, _) in enumerate(arrays):
        if len(joints) != count:
            raise DatasetError(
                f"{source}: entry {index} has {len(joints)} joints, entry 0 has {count}"
            )
    names = [f"joint_{k}" for k in range(count)] if keypoint_names is None else list(keypoint_names)
    if len(names) != count:
        raise DatasetError(
            f"{source}: the entries have {count} joints but {len(names)} keypoint names were given"
        )
    image_ids = {name: i + 1 for i, name in enumerate(sorted({e["image"] for e in entries}))}
    shift = 1.0 if one_based else 0.0
    annotations = [
        person_annotation(
            index + 1, image_ids[entry["image"]], *parts, float(entry["scale"]), shift
        )
        for index, (entry, parts) in enumerate(zip(entries, arrays))
    ]
    return {
        "images": [image_entry(i, name, image_dir) for name, i in image_ids.items()],
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": names,
                "skeleton": [],
            }
        ],
    }


def person_annotation(
    ann_id: int,
    image_id: int,
    joints: np.ndarray,
    visible: np.ndarray,
    center: np.ndarray,
    scale: float,
    shift: float,
) -> dict:
    """One entry as a COCO annotation (see `to_coco`); joints (K, 2), visible (K,), center (2,)."""
    labelled = visible > 0
    points = np.zeros((len(joints), 3))
    points[labelled, :2] = joints[labelled] - shift
    points[labelled, 2] = 2
    cx, cy = (center - shift).tolist()
    side = PIXEL_STD * scale
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": points.reshape(-1).tolist(),
        "num_keypoints": int(labelled.sum()),
        "bbox": [cx - side / 2, cy - side / 2, side, side],
        "area": side * side,
        "iscrowd": 0,
        "center": [cx, cy],
        "scale": scale,
    }


def image_entry(image_id: int, name: str, image_dir: str | Path | None) -> dict:
    """A COCO image entry; width and height from the file's header when image_dir is given."""
    entry: dict[str, Any] = {"id": image_id, "file_name": name}
    if image_dir is not None:
        path = Path(image_dir) / name
        try:
            with Image.open(path) as image:  # reads the header only
                entry["width"], entry["height"] = image.size
        except OSError:
            raise DatasetError(f"cannot read image {path} (missing or corrupt)") from None
    return entry


class MpiiKeypoints(CocoKeypoints):
    """MPII's json list as a multi-person dataset: the entries of one image are its people.

    The same items, arguments and checks as CocoKeypoints ("keypoints" (P, K, 3) with v = 2 for
    labelled joints, 0 otherwise; "image_id" the `to_coco` id; "orig_size" from the image), and
    `self.coco` is the `to_coco` dict's index, for OKS-style evaluation. keypoint_names: the
    skeleton's joint names, for that index's category; one_based: see the module docstring. The
    ignore mask is all zeros (MPII marks no crowd or ignore regions).
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        *args: Any,
        keypoint_names: Sequence[str] | None = None,
        one_based: bool = True,
        **kwargs: Any,
    ) -> None:
        """CocoKeypoints' arguments (but keypoints_field: MPII has one layout), plus
        keypoint_names and one_based."""
        if "keypoints_field" in kwargs:
            raise TypeError("MpiiKeypoints: the MPII layout has no keypoints_field to choose")
        # read by _load_annotations, which CocoKeypoints.__init__ calls
        self._keypoint_names = keypoint_names
        self.one_based = one_based
        super().__init__(annotation_file, image_dir, *args, **kwargs)

    def _load_annotations(self) -> COCO:
        """The json list, converted by `to_coco` (sizes come from the images when loaded)."""
        dataset = to_coco(
            self.annotation_file, None, self._keypoint_names, self.one_based, self.annotation_file
        )
        return coco_from_dict(dataset, self.annotation_file)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """As CocoKeypoints.load; the info gains the image's height and width (the list has no
        sizes, and reading every header up front would cost a pass over the image folder)."""
        image, keypoints, ignore_mask, info = super().load(index)
        if "height" not in info:
            info = {**info, "height": image.shape[0], "width": image.shape[1]}
        return image, keypoints, ignore_mask, info

    def ignore_mask_for(
        self, info: dict, ignored: list[dict], height: int, width: int
    ) -> np.ndarray:
        """All zeros: MPII has no crowd or ignore regions, and its box is only a rough square
        from center and scale, too coarse to mask a person with no labelled joint."""
        return np.zeros((height, width), np.uint8)
