"""COCO person keypoints (any COCO-format json + image folder) for bottom-up training.

A sample holds the image, the people (keypoints + visibility) and an ignore mask covering crowd
regions and people without keypoint annotations (their pixels carry no supervision: a person is
there but no keypoint target says so). Geometry comes from an `augment` callable
(`datasets.augment`), targets from an `encoder` callable that tools pass in (the pose codec's
`encode`), so the dataset knows neither model nor skeleton.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from .augment import EvalResize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """A dataset file or folder that cannot be used; the message names it."""


def load_coco_keypoints(annotation_file: str | Path) -> COCO:
    """Load a COCO keypoint json quietly, with clear errors for a missing or keypoint-less file."""
    path = Path(annotation_file)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a COCO-format json ({err})") from None
    categories = [c for c in coco.dataset.get("categories", []) if c.get("keypoints")]
    if not categories:
        raise DatasetError(
            f"{path}: no category declares 'keypoints' (is this an instances_*.json? "
            "use person_keypoints_*.json)"
        )
    annotations = coco.dataset.get("annotations", [])
    if annotations and not any("keypoints" in a for a in annotations):
        raise DatasetError(f"{path}: annotations carry no 'keypoints' field")
    return coco


class CocoKeypoints(Dataset):
    """COCO-format keypoint dataset.

    Each item is a dict: "image" (3, H, W) float32 normalised with ImageNet mean/std (uint8
    with normalize=False), "keypoints" (P, K, 3) float32 (x, y, v) in input pixels,
    "ignore_mask" (H, W) uint8, "transform" (2, 3) original -> input pixels (from EvalResize;
    NaN after a random TrainAugment), "image_id" int, "orig_size" (h, w), plus the encoder's
    targets (e.g. "heatmaps" (19, h, w), "pafs" (38, h, w), "mask" (1, h, w)) as tensors.

    augment: TrainAugment or EvalResize (default EvalResize(input_size)); encoder: e.g.
    Pose2DCodec().encode, called as encoder(keypoints, (W, H), ignore_mask) in the worker.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        input_size: tuple[int, int] = (368, 368),
        augment: Callable | None = None,
        encoder: Callable[..., dict[str, np.ndarray]] | None = None,
        image_ids: list[int] | None = None,
        check_files: bool = True,
        normalize: bool = True,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder not found: {self.image_dir}")
        self.coco = load_coco_keypoints(annotation_file)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment = augment or EvalResize(self.input_size)
        self.encoder = encoder
        self.normalize = normalize
        self.category_ids = [c["id"] for c in self.coco.dataset["categories"] if c.get("keypoints")]
        self.num_keypoints = len(self.coco.cats[self.category_ids[0]]["keypoints"])
        self.image_ids = sorted(self.coco.imgs) if image_ids is None else list(image_ids)
        if check_files:
            self.check_images()

    def check_images(self) -> None:
        """DatasetError naming the images of `image_ids` missing from the image folder."""
        missing = [
            self.coco.imgs[i]["file_name"]
            for i in self.image_ids
            if not (self.image_dir / self.coco.imgs[i]["file_name"]).is_file()
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(
                f"{len(missing)} of {len(self.image_ids)} images listed in {self.annotation_file} "
                f"are missing from {self.image_dir}: {shown}"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Raw sample: image (H, W, 3) uint8 RGB, keypoints (P, K, 3), ignore mask (H, W) uint8."""
        info = self.coco.imgs[self.image_ids[index]]
        path = self.image_dir / info["file_name"]
        image = read_rgb(path)
        height, width = image.shape[:2]
        ann_ids = self.coco.getAnnIds(imgIds=info["id"], catIds=self.category_ids, iscrowd=None)
        annotations = self.coco.loadAnns(ann_ids)
        people = [a for a in annotations if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
        keypoints = np.array([a["keypoints"] for a in people], np.float32).reshape(
            len(people), self.num_keypoints, 3
        )
        ignored = [a for a in annotations if a.get("iscrowd") or a.get("num_keypoints", 0) == 0]
        ignore_mask = regions_mask(ignored, height, width)
        return image, keypoints, ignore_mask, info

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, keypoints, ignore_mask, info = self.load(index)
        transform = np.full((2, 3), np.nan, np.float32)
        result = self.augment(image, keypoints, ignore_mask)
        if len(result) == 4:
            image, keypoints, ignore_mask, transform = result
        else:
            image, keypoints, ignore_mask = result
        sample: dict[str, Any] = {
            "image": to_tensor(image, self.normalize),
            "keypoints": torch.from_numpy(np.ascontiguousarray(keypoints, np.float32)),
            "ignore_mask": torch.from_numpy(np.ascontiguousarray(ignore_mask, np.uint8)),
            "transform": torch.from_numpy(np.asarray(transform, np.float32)),
            "image_id": int(info["id"]),
            "orig_size": (int(info["height"]), int(info["width"])),
        }
        if self.encoder is not None:
            size = (image.shape[1], image.shape[0])
            for key, value in self.encoder(keypoints, size, ignore_mask).items():
                sample[key] = torch.from_numpy(value)
        return sample


# OpenCV >= 4.10 decodes JPEGs straight to RGB: the same pixels as BGR + cvtColor, ~0.5 ms less
# per COCO image (no second full-size pass and array).
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; DatasetError when the file is missing or not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    if image is None:
        raise DatasetError(f"cannot read image {path} (missing or corrupt)")
    return image if _IMREAD_RGB is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def regions_mask(annotations: list[dict], height: int, width: int) -> np.ndarray:
    """(H, W) uint8 union of the annotations' segmentations (their bbox where there is none)."""
    mask = np.zeros((height, width), np.uint8)
    for ann in annotations:
        segmentation = ann.get("segmentation")
        if segmentation:
            if isinstance(segmentation, list):
                rles = mask_utils.frPyObjects(segmentation, height, width)
                rle = mask_utils.merge(rles)
            elif isinstance(segmentation.get("counts"), list):
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            mask |= mask_utils.decode(rle).astype(np.uint8)
        elif ann.get("bbox"):
            x, y, w, h = (int(round(v)) for v in ann["bbox"])
            mask[max(y, 0) : y + h, max(x, 0) : x + w] = 1
    return mask


# uint8 value -> ImageNet-normalised float per channel: a (1, 256, 3) table for cv2.LUT, which
# converts and normalises in one pass.
_NORMALISE_LUT = np.ascontiguousarray(
    (
        (np.arange(256, dtype=np.float32)[:, None] / 255.0 - np.array(IMAGENET_MEAN, np.float32))
        / np.array(IMAGENET_STD, np.float32)
    )[None]
)


def to_tensor(image: np.ndarray, normalize: bool = True) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W): float32 ImageNet-normalised, or uint8 as is when
    normalize is False (then normalise on the device: 4x less data through the loader).

    The result is a channels-last view (no copy); collate/stack makes batches contiguous.
    """
    image = np.ascontiguousarray(image)
    if normalize:
        image = cv2.LUT(image, _NORMALISE_LUT)
    return torch.from_numpy(image).permute(2, 0, 1)


def collate_pose(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the fixed-size tensors; keep per-image people, ids and sizes as lists."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if key != "keypoints" and isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
