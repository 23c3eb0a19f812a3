"""Multi-person 3D pose data (MuCo-3DHP / MuPoTS-3D format, and the synthetic people set).

The format (COCO-style json, as distributed for MuCo-3DHP training and MuPoTS-3D testing):
- images: {"id", "file_name" (relative to the image folder), "width", "height", "f": [fx, fy],
  "c": [cx, cy]} (pixels); the synthetic set's {"camera": {"f": [...], "c": [...]}} also works;
- annotations: {"image_id", "keypoints_cam": J x [X, Y, Z] camera mm, "keypoints_img": J x [u, v]
  pixels (optional: projected from keypoints_cam when absent), optional "keypoints_vis" (J,),
  optional COCO "keypoints" (17 x 3) and "num_keypoints", optional "is_valid"}; the synthetic
  set's "keypoints_3d" is read as keypoints_cam. J is 21 (MuCo, the XNect order) or 17 (MuPoTS:
  the first 17 of it); missing joints are NaN.

An item is CocoKeypoints' dict ("image", "keypoints" (P, 17, 3), "ignore_mask", "transform",
"image_id", "orig_size") plus "joints3d" (P, 21, 3) camera mm, "points2d" (P, 21, 3) projected 2D
(x, y, v) in input pixels (v = 1 inside the image), "has_3d" (P,) bool, "coco_labelled" (P,)
bool (the annotation has COCO keypoints of its own; False: they were made from the joints, so the
face types are not labelled), "camera_f" (2,) and "camera_c" (2,) in INPUT pixels (the resize
folded in, so 3D placement can run on network coordinates), and the encoders' targets. Datasets
know no skeleton: tools pass `coco_from_joints` (COCO keypoint -> joint index, -1 none;
`heads.skeletons.COCO17_FROM_JOINTS21`) to make 2D keypoints for people without COCO keypoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import EvalResize, clean_visibility
from .augment3d import apply_to_camera
from .coco import DatasetError, regions_mask, to_tensor

NUM_JOINTS = 21
PER_PERSON_KEYS = ("keypoints", "joints3d", "points2d", "has_3d", "coco_labelled")


def read_3d_json(path: str | Path) -> dict:
    """The json with clear errors; checks the fields every image and person needs."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not a json file ({err})") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DatasetError(f"{path}: needs top-level 'images' and 'annotations' lists")
    for image in data["images"]:
        if "camera" not in image and not ("f" in image and "c" in image):
            raise DatasetError(f"{path}: image {image.get('id')} has no camera ('f' and 'c')")
    for ann in data["annotations"]:
        if "keypoints_cam" not in ann and "keypoints_3d" not in ann:
            raise DatasetError(f"{path}: annotation {ann.get('id')} has no 'keypoints_cam'")
    return data


def camera_of(image: dict) -> tuple[np.ndarray, np.ndarray]:
    """(f (2,), c (2,)) pixels from an image record (either layout)."""
    camera = image.get("camera", image)
    f = np.broadcast_to(np.asarray(camera["f"], np.float64), (2,)).copy()
    return f, np.asarray(camera["c"], np.float64).reshape(2)


def person_arrays(ann: dict, f: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(joints3d (21, 3) mm with NaN for missing joints, points2d (21, 3) original pixels)."""
    cam = np.asarray(ann.get("keypoints_cam", ann.get("keypoints_3d")), np.float64).reshape(-1, 3)
    if len(cam) > NUM_JOINTS:
        raise DatasetError(f"annotation {ann.get('id')}: {len(cam)} joints (at most 21)")
    joints3d = np.full((NUM_JOINTS, 3), np.nan)
    joints3d[: len(cam)] = cam
    points = np.zeros((NUM_JOINTS, 3))
    if "keypoints_img" in ann:
        points[: len(cam), :2] = np.asarray(ann["keypoints_img"], np.float64).reshape(-1, 2)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            points[:, :2] = joints3d[:, :2] / joints3d[:, 2:] * f + c
    labelled = np.isfinite(joints3d).all(1) & (joints3d[:, 2] > 0)
    if "keypoints_vis" in ann:  # MuPoTS: 0 = outside the image
        vis = np.zeros(NUM_JOINTS, bool)
        vis[: len(cam)] = np.asarray(ann["keypoints_vis"], np.float64).reshape(-1) > 0
        labelled &= vis
    points[:, 2] = labelled
    points[~labelled] = 0
    return joints3d, points


class Multi3DDataset(Dataset):
    """MuCo/MuPoTS-format (or synthetic people) dataset; see the module docstring for items.

    augment: must return the original -> input similarity matrix (EvalResize, the default, or
    `augment3d.Augment3D` for training), which moves the camera and 3D joints exactly; a flip
    swaps left/right with flip_permutations = (COCO-17 flip, 21-joint flip). encoder: the 2D
    codec's encode(keypoints, (W, H), ignore_mask); encoder3d: the 3D codec's encode(joints3d,
    points2d, (W, H), has_3d); coco_from_joints: COCO-17 -> joint index, used for people
    without COCO "keypoints".
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        input_size: tuple[int, int] = (512, 320),
        augment: Callable | None = None,
        encoder: Callable[..., dict[str, np.ndarray]] | None = None,
        encoder3d: Callable[..., dict[str, np.ndarray]] | None = None,
        coco_from_joints: Sequence[int] | None = None,
        flip_permutations: tuple[Sequence[int], Sequence[int]] | None = None,
        check_files: bool = True,
        normalize: bool = True,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder not found: {self.image_dir}")
        data = read_3d_json(self.annotation_file)
        self.images = sorted(data["images"], key=lambda image: image["id"])
        self.people: dict[int, list[dict]] = {image["id"]: [] for image in self.images}
        for ann in data["annotations"]:
            if ann.get("image_id") not in self.people:
                raise DatasetError(
                    f"{self.annotation_file}: annotation {ann.get('id')} names unknown image "
                    f"{ann.get('image_id')}"
                )
            self.people[ann["image_id"]].append(ann)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment = augment or EvalResize(self.input_size)
        self.encoder, self.encoder3d = encoder, encoder3d
        self.coco_from_joints = None if coco_from_joints is None else list(coco_from_joints)
        self.flip_permutations = flip_permutations
        self.normalize = normalize
        if check_files:
            missing = [i["file_name"] for i in self.images if not self.image_path(i).is_file()]
            if missing:
                raise DatasetError(
                    f"{len(missing)} of {len(self.images)} images listed in "
                    f"{self.annotation_file} are missing from {self.image_dir}: "
                    + ", ".join(missing[:5])
                )

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, image: dict) -> Path:
        return self.image_dir / image["file_name"]

    def load(self, index: int) -> dict[str, Any]:
        """Raw sample in original pixels: image RGB, per-person arrays, camera, ignore mask."""
        info = self.images[index]
        image = cv2.imread(str(self.image_path(info)), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot read image {self.image_path(info)} (missing or corrupt)")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        f, c = camera_of(info)
        people = [a for a in self.people[info["id"]] if a.get("num_keypoints", 1) > 0]
        ignored = [a for a in self.people[info["id"]] if a.get("num_keypoints", 1) == 0]
        arrays = [person_arrays(a, f, c) for a in people]
        joints3d = np.array([a[0] for a in arrays]).reshape(-1, NUM_JOINTS, 3)
        points2d = np.array([a[1] for a in arrays]).reshape(-1, NUM_JOINTS, 3)
        keypoints = np.array([self._coco(a, p) for a, p in zip(people, points2d)]).reshape(
            -1, 17, 3
        )
        return {
            "image": image,
            "keypoints": keypoints.astype(np.float32),
            "joints3d": joints3d,
            "points2d": points2d,
            "has_3d": np.array([a.get("is_valid", 1) != 0 for a in people], bool),
            "coco_labelled": np.array(["keypoints" in a for a in people], bool),
            "ignore_mask": regions_mask(ignored, *image.shape[:2]),
            "f": f,
            "c": c,
            "info": info,
        }

    def _coco(self, ann: dict, points2d: np.ndarray) -> np.ndarray:
        """(17, 3) COCO keypoints: the annotation's own, else mapped from the joints' 2D."""
        if "keypoints" in ann:
            return np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
        out = np.zeros((17, 3))
        if self.coco_from_joints is not None:
            for k, j in enumerate(self.coco_from_joints):
                if j >= 0 and points2d[j, 2] > 0:
                    out[k] = (points2d[j, 0], points2d[j, 1], 2)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw = self.load(index)
        people = len(raw["keypoints"])
        # 2D keypoints and projected joints travel through the augmentation together
        stacked = np.concatenate([raw["keypoints"], raw["points2d"]], axis=1).astype(np.float32)
        result = self.augment(raw["image"], stacked, raw["ignore_mask"])
        if len(result) != 4:
            raise DatasetError(
                "Multi3DDataset: the augment must return its 2x3 matrix (e.g. EvalResize): "
                "a random rotation or flip would also change the 3D joints and the camera"
            )
        image, stacked, ignore_mask, matrix = result
        stacked = stacked.reshape(people, 17 + NUM_JOINTS, 3)
        keypoints, points2d = stacked[:, :17], stacked[:, 17:]
        size = (image.shape[1], image.shape[0])
        points2d = clean_visibility(points2d, *size)
        f, c, joints3d, flipped = apply_to_camera(matrix, raw["f"], raw["c"], raw["joints3d"])
        if flipped:  # the mirrored image shows a left wrist where the right one was
            if self.flip_permutations is None:
                raise DatasetError("Multi3DDataset: a flipping augment needs flip_permutations")
            coco_flip, joints_flip = (list(p) for p in self.flip_permutations)
            keypoints, points2d = keypoints[:, coco_flip], points2d[:, joints_flip]
            joints3d = joints3d[:, joints_flip]
        raw = dict(raw, joints3d=joints3d)
        sample: dict[str, Any] = {
            "image": to_tensor(image, self.normalize),
            "keypoints": torch.from_numpy(np.ascontiguousarray(keypoints, np.float32)),
            "ignore_mask": torch.from_numpy(np.ascontiguousarray(ignore_mask, np.uint8)),
            "transform": torch.from_numpy(np.asarray(matrix, np.float32)),
            "image_id": int(raw["info"]["id"]),
            "orig_size": (int(raw["info"]["height"]), int(raw["info"]["width"])),
            "joints3d": torch.from_numpy(raw["joints3d"].astype(np.float32)),
            "points2d": torch.from_numpy(points2d.astype(np.float32)),
            "has_3d": torch.from_numpy(raw["has_3d"]),
            "coco_labelled": torch.from_numpy(raw["coco_labelled"]),
            "camera_f": torch.from_numpy(f.astype(np.float32)),
            "camera_c": torch.from_numpy(c.astype(np.float32)),
        }
        add_targets(sample, (self.encoder, self.encoder3d), keypoints, points2d, raw, ignore_mask)
        return sample


def add_targets(sample, encoders, keypoints, points2d, raw, ignore_mask) -> None:
    """Run the tools' (2D, 3D) encoders and store their targets as tensors."""
    encoder, encoder3d = encoders
    size = tuple(sample["image"].shape[:0:-1])  # (W, H)
    if encoder is not None:
        for key, value in encoder(keypoints, size, ignore_mask).items():
            sample[key] = torch.from_numpy(value)
    if encoder3d is not None:
        for key, value in encoder3d(raw["joints3d"], points2d, size, raw["has_3d"]).items():
            sample[key] = torch.from_numpy(value)
