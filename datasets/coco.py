"""COCO person keypoints (any COCO-format json + image folder) for bottom-up training.

A sample holds the image, the people (keypoints + visibility) and an ignore mask covering crowd
regions and people without keypoint annotations (their pixels carry no supervision: a person is
there but no keypoint target says so). Geometry comes from an `augment` callable
(`datasets.augment`), targets from an `encoder` callable that tools pass in (the pose codec's
`encode`), so the dataset knows neither model nor skeleton: a skeleton's keypoint count and
name come in as plain arguments, and a json that disagrees is one DatasetError.

The other COCO-format datasets' quirks (CrowdPose's crowdIndex, PoseTrack's polygon ignore
regions and unlabelled frames, Human-Art's 21-point field and file-name prefix) are options of
CocoKeypoints; `datasets.keypoint_formats` sets them per format, and `datasets.mpii` converts
MPII's json list into the same kind of dataset.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from .augment import PAD_VALUE, EvalResize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
# A person's segment covers about this fraction of its box: the OKS area where a dataset gives
# boxes only (CrowdPose's official evaluation uses the same value).
BOX_AREA_FRACTION = 0.53
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """A dataset file or folder that cannot be used; the message names it."""


def load_coco_keypoints(annotation_file: str | Path, keypoints_field: str = "keypoints") -> COCO:
    """Load a COCO keypoint json quietly, with clear errors for a missing or keypoint-less file.
    keypoints_field: the annotation key that holds the (x, y, v) lists ("keypoints_21" for
    Human-Art's 21 points)."""
    path = Path(annotation_file)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a COCO-format json ({err})") from None
    check_keypoint_json(coco, path, keypoints_field)
    return coco


def coco_from_dict(dataset: dict, source: str | Path, keypoints_field: str = "keypoints") -> COCO:
    """A pycocotools COCO index over an in-memory COCO-format dict (a converted MPII list, say),
    built quietly; DatasetError naming `source` when pycocotools rejects it."""
    coco = COCO()
    coco.dataset = dataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{source}: not a COCO-format dataset ({err})") from None
    check_keypoint_json(coco, Path(source), keypoints_field)
    return coco


def check_keypoint_json(coco: COCO, path: Path, keypoints_field: str = "keypoints") -> None:
    """DatasetError unless a category declares keypoints and, where there are annotations, some
    carry `keypoints_field`."""
    if not keypoint_category_ids(coco):
        raise DatasetError(
            f"{path}: no category declares 'keypoints' (is this an instances_*.json? "
            "use person_keypoints_*.json)"
        )
    annotations = coco.dataset.get("annotations", [])
    if annotations and not any(keypoints_field in a for a in annotations):
        fields = sorted({k for a in annotations[:100] for k in a if k.startswith("keypoints")})
        found = f" (they have: {', '.join(fields)})" if fields else ""
        raise DatasetError(f"{path}: annotations carry no {keypoints_field!r} field{found}")


def keypoint_category_ids(coco: COCO) -> list[int]:
    """Ids of the categories that declare keypoint names, in the json's order."""
    return [c["id"] for c in coco.dataset.get("categories", []) if c.get("keypoints")]


def check_keypoint_count(
    coco: COCO,
    path: Path,
    keypoints_field: str = "keypoints",
    expected: int | None = None,
    skeleton_name: str | None = None,
) -> int:
    """Keypoints per person K in `keypoints_field`, checked once for the whole file (instead of
    the raw reshape error a mismatch would raise in a loader worker).

    With `expected` (the configured skeleton's count) every annotation's list must hold that many
    points: the lists, not the category's names, decide, so a field holding a prefix of the
    declared names (Human-Art's 17-point "keypoints" beside 21 names) loads as 17. Without it,
    every list must match the count the keypoint category declares. DatasetError naming the file
    (and the annotation, where one is at fault) otherwise.
    """
    ids = keypoint_category_ids(coco)
    declared = len(coco.cats[ids[0]]["keypoints"])
    wanted = set(ids)
    annotations = [a for a in coco.dataset.get("annotations", []) if a.get("category_id") in wanted]
    counts = annotation_counts(annotations, path, keypoints_field)
    if expected is None:
        for ann, count in counts:
            if count != declared:
                raise DatasetError(annotation_mismatch(path, ann, keypoints_field, count, declared))
        return declared
    found = sorted({count for _, count in counts})
    if found and found != [expected]:
        raise DatasetError(
            skeleton_mismatch(path, "annotations have", found, expected, skeleton_name)
        )
    if not found and declared != expected:
        what = "the keypoint category declares"
        raise DatasetError(skeleton_mismatch(path, what, [declared], expected, skeleton_name))
    return expected


def annotation_counts(
    annotations: list[dict], path: Path, keypoints_field: str
) -> list[tuple[dict, int]]:
    """(annotation, points in its list) for every annotation with a non-empty list; DatasetError
    for a list that is not x, y, v triples, or a labelled person (not crowd, num_<field> > 0)
    with no list at all."""
    count_field = "num_" + keypoints_field
    out = []
    for ann in annotations:
        values = ann.get(keypoints_field)
        if not values:
            if not ann.get("iscrowd") and ann.get(count_field, 0) > 0:
                raise DatasetError(
                    f"{path}: annotation {ann.get('id')} has {count_field} = "
                    f"{ann.get(count_field)} but no {keypoints_field!r} list"
                )
            continue  # crowd regions and unlabelled people may carry no list
        if not isinstance(values, list) or len(values) % 3:
            size = len(values) if isinstance(values, list) else type(values).__name__
            raise DatasetError(
                f"{path}: annotation {ann.get('id')}: {keypoints_field!r} must be a flat list of "
                f"x, y, v triples, got {size} values"
            )
        out.append((ann, len(values) // 3))
    return out


def annotation_mismatch(path: Path, ann: dict, field: str, count: int, declared: int) -> str:
    """The message for one annotation whose list disagrees with the category's names, pointing
    at a sibling field of the declared length if the annotation has one (Human-Art's
    "keypoints_21")."""
    sibling = next(
        (
            key
            for key, value in ann.items()
            if key != field
            and isinstance(value, list)
            and len(value) == 3 * declared
            and key.startswith("keypoints")
        ),
        None,
    )
    hint = (
        f"; its {sibling!r} has {declared}: pass keypoints_field={sibling!r}, or "
        f"num_keypoints={count} to read the {count} in {field!r}"
        if sibling
        else f"; pass num_keypoints={count} if the lists are right"
    )
    return (
        f"{path}: annotation {ann.get('id')} has {count} keypoints in {field!r}, but the keypoint "
        f"category declares {declared}{hint}"
    )


def skeleton_mismatch(
    path: Path, what: str, found: list[int], expected: int, skeleton_name: str | None
) -> str:
    """The one message for a json whose keypoint count is not the configured skeleton's."""
    # imported here: keypoint_formats imports this module for its loader table
    from .keypoint_formats import skeletons_with

    counts = " and ".join(str(n) for n in found)
    skeleton = f"the configured skeleton {skeleton_name}" if skeleton_name else "the skeleton"
    message = f"{path}: {what} {counts} keypoints, but {skeleton} has {expected}"
    if len(found) > 1:
        return message + "; every annotation needs the same number of keypoints"
    names = [name for name in skeletons_with(found[0]) if name != skeleton_name]
    choice = f" ({', '.join(names)})" if names else ""
    return (
        f"{message}; set codec.skeleton to a {found[0]}-keypoint skeleton{choice} or use a "
        "matching json"
    )


def ignore_region_polygons(info: dict, path: Path) -> list[np.ndarray]:
    """PoseTrack's per-image ignore regions: `ignore_regions_x` / `ignore_regions_y`, one list of
    coordinates per polygon (a flat list is one polygon), as (N, 2) int32 arrays for
    cv2.fillPoly. Polygons of fewer than 3 points cover no area and are dropped. DatasetError
    naming the file and image for x and y lists that do not pair up."""
    xs, ys = info.get("ignore_regions_x"), info.get("ignore_regions_y")
    if not xs and not ys:
        return []
    where = f"{path}: image {info.get('id')}"
    if not isinstance(xs, list) or not isinstance(ys, list):
        raise DatasetError(f"{where}: ignore_regions_x and ignore_regions_y must both be lists")
    if xs and not isinstance(xs[0], list):
        xs, ys = [xs], [ys]
    if len(xs) != len(ys):
        raise DatasetError(
            f"{where}: ignore_regions_x has {len(xs)} polygons but ignore_regions_y {len(ys)}"
        )
    polygons = []
    for number, (x, y) in enumerate(zip(xs, ys)):
        try:
            points = np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=-1)
        except (ValueError, TypeError):
            raise DatasetError(
                f"{where}: ignore region {number} has {len(x)} x but {len(y)} y coordinates "
                "(or non-numbers)"
            ) from None
        if points.ndim == 2 and len(points) >= 3:
            polygons.append(np.round(points).astype(np.int32))
    return polygons


def detect_prefix(file_names: list[str], image_dir: Path, tries: int = 8) -> str:
    """The shortest leading run of path parts ("HumanArt/images/") whose removal from a file
    name makes the file exist under image_dir; "" when the names resolve as written. Decided by
    the first of the first `tries` names that resolves at all (one stat per part, so cheap); ""
    when none does (check_images then names the missing files)."""
    for name in file_names[:tries]:
        parts = PurePosixPath(name).parts
        for skip in range(len(parts)):
            if image_dir.joinpath(*parts[skip:]).is_file():
                return "".join(part + "/" for part in parts[:skip])
    return ""


class CocoKeypoints(Dataset):
    """COCO-format keypoint dataset (COCO, CrowdPose, AI Challenger, OCHuman, PoseTrack18,
    Human-Art; `datasets.keypoint_formats` knows each one's settings).

    Each item is a dict: "image" (3, H, W) float32 normalised with ImageNet mean/std (uint8
    with normalize=False), "keypoints" (P, K, 3) float32 (x, y, v) in input pixels,
    "ignore_mask" (H, W) uint8, "transform" (2, 3) original -> input pixels (from EvalResize;
    NaN after a random TrainAugment), "image_id" int, "orig_size" (h, w), plus the encoder's
    targets (e.g. "heatmaps" (19, h, w), "pafs" (38, h, w), "mask" (1, h, w)) as tensors.

    augment: TrainAugment or EvalResize (default EvalResize(input_size)); encoder: e.g.
    Pose2DCodec().encode, called as encoder(keypoints, (W, H), ignore_mask) in the worker.

    Other formats' quirks:
    - num_keypoints / skeleton_name: the configured skeleton's K and name; a json with another
      count is one DatasetError naming the file, the count found and the skeleton expected.
    - keypoints_field: the annotation key with the (x, y, v) lists; its labelled count is read
      from "num_" + keypoints_field (Human-Art: "keypoints_21" / "num_keypoints_21").
    - strip_prefix: removed from the front of each `file_name` before joining it to image_dir
      (Human-Art's "HumanArt/images/"); "auto" picks it with `detect_prefix`.
    - PoseTrack's polygon ignore_regions_x / _y join the ignore mask like crowd regions; its
      frames marked `is_labeled: false` (no people annotated, not "no people there") are left
      out of the default image_ids.
    - CrowdPose's per-image crowdIndex: `crowd_indices()`, `image_info(image_id)`.
    """

    # Set by `map_keypoints`: for each keypoint of the target order, the annotation's index,
    # -1 where the annotation has no such point.
    keypoint_map: tuple[int, ...] | None = None

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
        num_keypoints: int | None = None,
        skeleton_name: str | None = None,
        keypoints_field: str = "keypoints",
        strip_prefix: str = "",
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder not found: {self.image_dir}")
        self.keypoints_field = keypoints_field
        self.count_field = "num_" + keypoints_field
        self.coco = self._load_annotations()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment = augment or EvalResize(self.input_size)
        self.encoder = encoder
        self.normalize = normalize
        self.skeleton_name = skeleton_name
        self.category_ids = keypoint_category_ids(self.coco)
        self.num_keypoints = check_keypoint_count(
            self.coco, self.annotation_file, keypoints_field, num_keypoints, skeleton_name
        )
        names = self.coco.cats[self.category_ids[0]]["keypoints"]
        # the category's names describe the lists only when the counts agree
        self.keypoint_names = tuple(names) if len(names) == self.num_keypoints else None
        if image_ids is None:
            labelled = (i for i, info in self.coco.imgs.items() if info.get("is_labeled", True))
            self.image_ids = sorted(labelled)
        else:
            self.image_ids = list(image_ids)
        self.ignore_polygons = {
            i: polygons
            for i in self.image_ids
            if (polygons := ignore_region_polygons(self.coco.imgs[i], self.annotation_file))
        }
        if strip_prefix == "auto":
            names = [self.coco.imgs[i]["file_name"] for i in self.image_ids]
            strip_prefix = detect_prefix(names, self.image_dir)
        self.strip_prefix = strip_prefix
        if check_files:
            self.check_images()

    def _load_annotations(self) -> COCO:
        """The COCO index of annotation_file (subclasses convert other layouts into one)."""
        return load_coco_keypoints(self.annotation_file, self.keypoints_field)

    def image_path(self, info: dict) -> Path:
        """Where an image entry's file is: image_dir / file_name without strip_prefix."""
        name = info["file_name"]
        if self.strip_prefix and name.startswith(self.strip_prefix):
            name = name[len(self.strip_prefix) :]
        return self.image_dir / name

    def image_info(self, image_id: int) -> dict:
        """A copy of the json's entry for one image (CrowdPose's "crowdIndex", PoseTrack's
        "vid_id", ...)."""
        return dict(self.coco.imgs[image_id])

    def crowd_indices(self) -> dict[int, float]:
        """image_id -> CrowdPose's crowdIndex for the images of image_ids that have one (the
        easy / medium / hard split of its AP); empty for other datasets."""
        return {
            i: float(self.coco.imgs[i]["crowdIndex"])
            for i in self.image_ids
            if "crowdIndex" in self.coco.imgs[i]
        }

    def check_images(self) -> None:
        """DatasetError naming the images of `image_ids` missing from the image folder."""
        missing = [
            str(self.image_path(self.coco.imgs[i]).relative_to(self.image_dir))
            for i in self.image_ids
            if not self.image_path(self.coco.imgs[i]).is_file()
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            stripped = f" (after removing {self.strip_prefix!r})" if self.strip_prefix else ""
            raise DatasetError(
                f"{len(missing)} of {len(self.image_ids)} images listed in {self.annotation_file} "
                f"are missing from {self.image_dir}{stripped}: {shown}{self._prefix_hint(missing)}"
            )

    def _prefix_hint(self, missing: list[str]) -> str:
        """A hint for names that resolve once a leading part is removed (Human-Art's)."""
        prefix = detect_prefix(missing, self.image_dir)
        if not prefix:
            return ""
        return f"; they are there without the leading {prefix!r}: pass strip_prefix='auto'"

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Raw sample: image (H, W, 3) uint8 RGB, keypoints (P, K, 3), ignore mask (H, W) uint8."""
        info = self.coco.imgs[self.image_ids[index]]
        image = read_rgb(self.image_path(info))
        height, width = image.shape[:2]
        ann_ids = self.coco.getAnnIds(imgIds=info["id"], catIds=self.category_ids, iscrowd=None)
        annotations = self.coco.loadAnns(ann_ids)
        count = self.count_field
        people = [a for a in annotations if not a.get("iscrowd") and a.get(count, 0) > 0]
        keypoints = np.array([a[self.keypoints_field] for a in people], np.float32).reshape(
            len(people), self.num_keypoints, 3
        )
        ignored = [a for a in annotations if a.get("iscrowd") or a.get(count, 0) == 0]
        ignore_mask = self.ignore_mask_for(info, ignored, height, width)
        if self.keypoint_map is not None:
            index = np.array(self.keypoint_map, np.int64)
            keypoints = keypoints[:, np.maximum(index, 0)] * (index >= 0)[:, None]
        return image, keypoints, ignore_mask, info

    def scoring_ground_truth(self) -> COCO:
        """The COCO index pycocotools' OKS evaluation should score against: the json as it is
        when its `keypoints` are the ones served and every person has an `area`; else a copy
        with `keypoints` / `num_keypoints` taken from keypoints_field (Human-Art's 21 points)
        and missing areas made from the box, w x h x BOX_AREA_FRACTION (CrowdPose and PoseTrack
        give boxes, no areas; CrowdPose's official tool uses the same fraction)."""
        annotations = self.coco.dataset.get("annotations", [])
        field, count = self.keypoints_field, self.count_field
        if field == "keypoints" and all("area" in a for a in annotations):
            return self.coco
        copied = []
        for annotation in annotations:
            annotation = dict(annotation)
            if field != "keypoints":
                annotation["keypoints"] = annotation.get(field, [])
                annotation["num_keypoints"] = annotation.get(count, 0)
            if "area" not in annotation:
                _, _, width, height = annotation.get("bbox", (0, 0, 0, 0))
                annotation["area"] = float(width) * float(height) * BOX_AREA_FRACTION
            copied.append(annotation)
        return coco_from_dict(
            {**self.coco.dataset, "annotations": copied}, self.annotation_file, "keypoints"
        )

    def map_keypoints(self, mapping: Sequence[int]) -> None:
        """Serve every person in another keypoint order: keypoint k of a sample is annotation
        point mapping[k], or (0, 0, 0) where mapping[k] is -1 (the caller masks those types in the
        loss as unlabelled). An augment's flip permutation must then be the target order's."""
        mapping = tuple(int(i) for i in mapping)
        if any(i >= self.num_keypoints or i < -1 for i in mapping):
            raise DatasetError(
                f"{self.annotation_file}: keypoint map {list(mapping)} indexes outside the "
                f"{self.num_keypoints} annotated keypoints"
            )
        self.keypoint_map = mapping

    def ignore_mask_for(
        self, info: dict, ignored: list[dict], height: int, width: int
    ) -> np.ndarray:
        """(H, W) uint8: crowd regions and people without keypoints (`regions_mask`), plus the
        image's ignore polygons (PoseTrack)."""
        mask = regions_mask(ignored, height, width)
        # one call per polygon: given several at once, cv2.fillPoly leaves their overlap empty
        # (even-odd filling), and overlapping regions must stay ignored
        for polygon in self.ignore_polygons.get(info["id"], ()):
            cv2.fillPoly(mask, [polygon], 1)
        return mask

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
    """Stack the tensors; keep per-image people, ids and sizes as lists. Images of different
    sizes (EvalScale gives each its own) are padded bottom/right to the batch's largest, with
    the letterbox's pad colour (uint8 images) and 0 in the ignore mask: padding holds no people,
    and the transforms, which map original pixels to the top-left aligned input, stay valid."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if key in ("image", "ignore_mask") and len({v.shape for v in values}) > 1:
            values = pad_to_largest(values, key)
        if key != "keypoints" and isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def pad_to_largest(values: list[torch.Tensor], key: str) -> list[torch.Tensor]:
    """(C, H_i, W_i) images or (H_i, W_i) masks -> all of the largest H and W, padded at the
    bottom/right (uint8 images with PAD_VALUE per channel, anything else with 0)."""
    height = max(v.shape[-2] for v in values)
    width = max(v.shape[-1] for v in values)
    padded = []
    for value in values:
        canvas = value.new_zeros((*value.shape[:-2], height, width))
        if key == "image" and value.dtype == torch.uint8:
            canvas[:] = torch.tensor(PAD_VALUE, dtype=torch.uint8).view(3, 1, 1)
        canvas[..., : value.shape[-2], : value.shape[-1]] = value
        padded.append(canvas)
    return padded
