"""Miniature datasets laid out exactly as the shipped recipes expect, built from the real samples
in ../shared/data, a stand-in for a published weight file, and a launcher for recipe runs in
subprocesses (plain python or torchrun).

- ImageNet: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (real ImageNet val images).
- COCO: ROOT/annotations/person_keypoints_{train,val}2017.json, ROOT/train2017/, ROOT/val2017/;
  val2017 holds the four real COCO val2017 images with their own annotations, train2017 copies of
  them under new COCO-style ids (as many copies as asked, so an epoch has several steps).
- MuCo-3DHP / MuPoTS-3D (configs/muco): ROOT/muco/MuCo-3DHP.json + ROOT/muco/augmented_set/*.jpg
  (21 joints), ROOT/mupots/MuPoTS-3D.json + ROOT/mupots/MultiPersonTestSet/TS*/img_*.jpg
  (17 joints, keypoints_vis), ROOT/coco/annotations/person_keypoints_train2017.json +
  ROOT/coco/train2017/. The images are the real COCO ones; each annotated person gets a synthetic
  standing 3D body placed in front of the image's camera so that it projects onto the person's box.

Run as a script (`python tests/recipe_data.py CONFIG [overrides]`, also under torchrun) it is
`python -m selecsls.tools.train` with one test-only change, read from $RECIPE_PUBLISHED_FILE:
the published name's file name in the hub table is replaced by the stand-in's, whose hash prefix
is its own (see `publish_stand_in`), so the download from $SELECSLS_WEIGHTS_MIRROR passes the real
integrity check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

# A standing person, pelvis-relative, camera axes (x right, y down, z forward), mm, in the XNect
# 21-joint order (the same body as tests/data/muco_tiny/make_fixture.py).
BODY = np.array([
    [0, -750, 0], [0, -500, 0], [-180, -480, 0], [-200, -200, 0], [-210, 50, 0],
    [180, -480, 0], [200, -200, 0], [210, 50, 0], [-100, 0, 0], [-110, 420, 0],
    [-110, 830, 0], [100, 0, 0], [110, 420, 0], [110, 830, 0], [0, 0, 0], [0, -250, 0],
    [0, -620, 0], [-215, 140, 0], [215, 140, 0], [-110, 870, 120], [110, 870, 120],
], np.float64)  # fmt: skip
BODY_HEIGHT = BODY[:, 1].max() - BODY[:, 1].min()
LAUNCHER = Path(__file__).resolve()  # this file, run as a script: see the module docstring


def imagenet_miniature(shared: Path, root: Path, wnids: list[str]) -> Path:
    """root/{train,val}/<wnid>/*.JPEG from the real val images of the given classes."""
    for split in ("train", "val"):
        for wnid in wnids:
            src = shared / "imagenet_sample" / "val" / wnid
            shutil.copytree(src, root / split / wnid)
    return root


def coco_sample(shared: Path) -> dict:
    return json.loads((shared / "coco_sample" / "person_keypoints_sample.json").read_text())


def coco_miniature(shared: Path, root: Path, train_copies: int = 2) -> Path:
    """The COCO layout; val2017 = the 4 real images, train2017 = `train_copies` copies each."""
    sample = coco_sample(shared)
    (root / "annotations").mkdir(parents=True)
    for split, copies in (("val2017", 1), ("train2017", train_copies)):
        folder = root / split
        folder.mkdir()
        data = {k: v for k, v in sample.items() if k not in ("images", "annotations")}
        data["images"], data["annotations"] = [], []
        for k in range(copies):
            offset = 0 if split == "val2017" else (k + 1) * 1_000_000
            for image in sample["images"]:
                new = dict(
                    image, id=image["id"] + offset, file_name=f"{image['id'] + offset:012d}.jpg"
                )
                shutil.copyfile(
                    shared / "coco_sample" / image["file_name"], folder / new["file_name"]
                )
                data["images"].append(new)
            for ann in sample["annotations"]:
                data["annotations"].append(
                    dict(ann, id=ann["id"] + offset, image_id=ann["image_id"] + offset)
                )
        (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))
    return root


def _people_3d(image: dict, anns: list[dict], joints: int) -> tuple[dict, list[dict]]:
    """An image record with a camera and, per annotated COCO person, a synthetic 3D body."""
    width, height = image["width"], image["height"]
    f, c = [float(width), float(width)], [(width - 1) / 2, (height - 1) / 2]
    people = []
    for ann in anns:
        if ann.get("num_keypoints", 0) == 0 or ann.get("iscrowd"):
            continue
        x, y, w, h = ann["bbox"]
        depth = f[1] * BODY_HEIGHT / max(h, 1.0)
        centre = np.array([(x + w / 2 - c[0]) * depth / f[0], (y + h / 2 - c[1]) * depth / f[1]])
        body = BODY + [centre[0], centre[1], depth]
        pixels = body[:, :2] / body[:, 2:] * f + c
        people.append(
            {
                "keypoints_cam": body[:joints].round(1).tolist(),
                "keypoints_img": pixels[:joints].round(2).tolist(),
                "bbox": [x, y, w, h],
            }
        )
    record = {"width": width, "height": height, "f": f, "c": c}
    return record, people


def muco_miniature(shared: Path, root: Path) -> Path:
    """The layout configs/muco/xnect_selecsls60.yaml documents, from the real COCO images."""
    sample = coco_sample(shared)
    by_image: dict[int, list[dict]] = {}
    for ann in sample["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    muco = {"images": [], "annotations": []}
    mupots = {"images": [], "annotations": []}
    (root / "muco" / "augmented_set").mkdir(parents=True)
    for n, image in enumerate(sample["images"]):
        src = shared / "coco_sample" / image["file_name"]
        # MuCo: 21 joints, flat file names in augmented_set/
        record, people = _people_3d(image, by_image.get(image["id"], []), 21)
        name = f"{n:06d}.jpg"
        shutil.copyfile(src, root / "muco" / "augmented_set" / name)
        muco["images"].append({"id": n + 1, "file_name": name, **record})
        for person in people:
            ann_id = len(muco["annotations"]) + 1
            muco["annotations"].append({"id": ann_id, "image_id": n + 1, **person})
        # MuPoTS: 17 joints, one sequence folder per two images, per-joint visibility
        record, people = _people_3d(image, by_image.get(image["id"], []), 17)
        name = f"TS{n // 2 + 1}/img_{n % 2:06d}.jpg"
        (root / "mupots" / "MultiPersonTestSet" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / "mupots" / "MultiPersonTestSet" / name)
        mupots["images"].append({"id": n + 1, "file_name": name, **record})
        for person in people:
            ann_id = len(mupots["annotations"]) + 1
            person = {**person, "keypoints_vis": [1] * 17, "is_valid": 1}
            mupots["annotations"].append({"id": ann_id, "image_id": n + 1, **person})
    (root / "muco" / "MuCo-3DHP.json").write_text(json.dumps(muco))
    (root / "mupots" / "MuPoTS-3D.json").write_text(json.dumps(mupots))
    coco = root / "coco"
    coco_miniature(shared, coco, train_copies=1)
    shutil.rmtree(coco / "val2017")
    (coco / "annotations" / "person_keypoints_val2017.json").unlink()
    return root


def publish_stand_in(state_dict: dict, published_url: str, mirror: Path) -> tuple[Path, str]:
    """Save `state_dict` into the mirror folder under the published file's name pattern, with
    the torch.hub hash prefix of the stand-in's own bytes; returns (path, file name).

    A stand-in cannot carry the published file's SHA-256 prefix (bbf87526 for selecsls60.timm),
    and the hub rightly refuses a file whose hash does not match its name, so the test points the
    published entry at the stand-in's name (RECIPE_PUBLISHED_FILE) instead of disabling the check.
    """
    import torch

    mirror.mkdir(parents=True, exist_ok=True)
    tmp = mirror / "stand_in.tmp"
    torch.save(state_dict, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    stem = published_url.rsplit("/", 1)[1].rsplit("-", 1)[0]
    name = f"{stem}-{digest}.pth"
    os.replace(tmp, mirror / name)
    return mirror / name, name


def published_as(spec: str) -> tuple[str, object]:
    """spec 'NAME=FILE.pth' -> (NAME, its hub entry downloading FILE.pth instead)."""
    from selecsls.backbones import hub

    name, filename = spec.split("=", 1)
    entry = hub.PUBLISHED[name]
    return name, dataclasses.replace(entry, url=entry.url.rsplit("/", 1)[0] + "/" + filename)


def main() -> int:
    if os.environ.get("RECIPE_PUBLISHED_FILE"):
        from selecsls.backbones import hub

        name, entry = published_as(os.environ["RECIPE_PUBLISHED_FILE"])
        hub.PUBLISHED[name] = entry
    from selecsls.tools._cli import run_cli
    from selecsls.tools.train import main as train_main

    return run_cli(train_main, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
