"""Mixing 2D-only and 3D-labelled data in one run, the synthetic people set as 3D data, collate.

A 2D-only dataset (CocoKeypoints) is wrapped in `With3DFields`, which gives its items the 3D keys
of `Multi3DDataset` with has_3d False for every person (and NaN joints), plus the 3D encoder's
targets (all-zero weights), so batches of both kinds stack and the 3D loss ignores COCO people
while they still train the 2D branch. `mixed_dataset` concatenates; `collate_pose3d` keeps the
per-person arrays as lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from .muco import (
    NUM_JOINTS,
    PER_PERSON_KEYS,
    Multi3DDataset,
    camera_of,
    person_arrays,
    read_3d_json,
)


class With3DFields(Dataset):
    """Wraps a 2D dataset: each item gains "joints3d" (P, 21, 3) NaN, "points2d" (P, 21, 3) 0,
    "has_3d" (P,) False, "coco_labelled" (P,) True, "camera_f"/"camera_c" (a default camera:
    f = input width, c = input centre) and encoder3d's targets."""

    def __init__(self, dataset: Dataset, encoder3d: Callable[..., dict] | None = None) -> None:
        self.dataset = dataset
        self.encoder3d = encoder3d

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        people = len(sample["keypoints"])
        height, width = sample["image"].shape[-2:]
        joints3d = np.full((people, NUM_JOINTS, 3), np.nan, np.float32)
        points2d = np.zeros((people, NUM_JOINTS, 3), np.float32)
        has_3d = np.zeros(people, bool)
        sample.update(
            joints3d=torch.from_numpy(joints3d),
            points2d=torch.from_numpy(points2d),
            has_3d=torch.from_numpy(has_3d),
            coco_labelled=torch.ones(people, dtype=torch.bool),
            camera_f=torch.tensor([width, width], dtype=torch.float32),
            camera_c=torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float32),
        )
        if self.encoder3d is not None:
            for key, value in self.encoder3d(joints3d, points2d, (width, height), has_3d).items():
                sample[key] = torch.from_numpy(value)
        return sample


def mixed_dataset(datasets: Sequence[Dataset]) -> ConcatDataset:
    """One dataset over 3D datasets (Multi3DDataset) and 2D ones (wrapped in With3DFields);
    sample the mixture ratio with a sampler (e.g. WeightedRandomSampler) in the tools."""
    for dataset in datasets:
        if not isinstance(dataset, Multi3DDataset | With3DFields):
            raise TypeError(
                f"mixed_dataset: {type(dataset).__name__} has no 3D fields; wrap 2D-only "
                "datasets in With3DFields(dataset, encoder3d)"
            )
    return ConcatDataset(list(datasets))


def synthetic_people_3d(folder: str | Path, **kwargs: Any) -> Multi3DDataset:
    """The synthetic people set (`synthetic_people.generate`) as a 3D dataset: its json carries
    each person's 21 joints ("keypoints_3d", camera mm) and each image's camera."""
    folder = Path(folder)
    return Multi3DDataset(folder / "annotations.json", folder / "images", **kwargs)


class Multi3DPeople(Dataset):
    """The fully 3D-labelled people of a MuCo-format (or synthetic) json, without images: Stage II
    training on ground truth. Item: {"joints3d" (21, 3) camera mm, "points2d" (21, 3) original
    pixels (x, y, v), "keypoints" (17, 3) COCO (x, y, v; all 0 when the json has none),
    "coco_labelled" () 1.0 when the json has them (COCO-style: face points wherever visible),
    "camera_f" (2,), "camera_c" (2,)}; `repeats` lists every person that many times per epoch
    (each copy gets fresh noise in the tools). The COCO keypoints let Stage II train on the same
    2D points (nose as the head) that the 2D decoder gives it at inference."""

    def __init__(self, annotation_file: str | Path, repeats: int = 1) -> None:
        data = read_3d_json(annotation_file)
        cameras = {image["id"]: camera_of(image) for image in data["images"]}
        people = []
        for ann in data["annotations"]:
            if ann.get("num_keypoints", 1) == 0 or ann.get("is_valid", 1) == 0:
                continue
            f, c = cameras[ann["image_id"]]
            joints3d, points2d = person_arrays(ann, f, c)
            keypoints = np.asarray(ann.get("keypoints") or [0.0] * 51, np.float64).reshape(17, 3)
            if np.isfinite(joints3d).all():
                people.append((joints3d, points2d, keypoints, "keypoints" in ann, f, c))
        self.people = people
        self.repeats = max(int(repeats), 1)

    def __len__(self) -> int:
        return len(self.people) * self.repeats

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        joints3d, points2d, keypoints, coco_labelled, f, c = self.people[index % len(self.people)]
        values = {
            "joints3d": joints3d,
            "points2d": points2d,
            "keypoints": keypoints,
            "coco_labelled": float(coco_labelled),
            "camera_f": f,
            "camera_c": c,
        }
        return {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in values.items()}


def collate_pose3d(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack fixed-size tensors; per-person arrays, ids and sizes stay lists."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if key not in PER_PERSON_KEYS and isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
