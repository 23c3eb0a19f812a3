"""Synthetic multi-person images with exact 2D and 3D ground truth, as a COCO-format dataset.

Each image: a random textured background, a pinhole camera (focal length, principal point, height,
downward tilt) and 1..max_people articulated bodies (`synthetic_body`) standing on the ground at
several depths, rendered back to front with shading (`synthetic_render`), so people occlude each
other and themselves. Written as images/NNNNNN.jpg + one json:
- annotations: COCO's 17 keypoints (v = 2 visible, 1 occluded by a person or limb, 0 outside the
  image; face points (nose, eyes, ears) only when visible, else 0, as COCO's annotators label
  them; all 0 for a person with under MIN_LABELLED_AREA visible pixels or under
  MIN_VISIBLE_KEYPOINTS visible keypoints, as COCO leaves such people unlabelled),
  num_keypoints, area and bbox of the visible pixels, RLE segmentation, iscrowd 0, and
  "keypoints_3d": the 21 XNect joints (DESIGN.md section 4) in camera coordinates (mm);
- images: "camera": {"f": [fx, fy], "c": [cx, cy]} (pixels; x right, y down, z forward).
Deterministic for a seed: image i depends only on (seed, i).

    python -m selecsls.datasets.synthetic_people --out DIR --num-images N --seed S --size WxH \
        [--max-people K] [--depth-range NEAR FAR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .synthetic_body import (
    JOINT_NAMES,
    J,
    pose_body,
    rot_x,
    rot_y,
    rot_z,
    sample_angles,
    sample_bones,
)
from .synthetic_render import (
    KEYPOINT_OWNERS,
    facing_camera,
    person_materials,
    render_background,
    render_people,
)

COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
# COCO keypoint -> ("face", index) or ("joint", index)
_COCO_SOURCES = [("face", i) for i in range(5)] + [("joint", J[name]) for name in COCO_NAMES[5:]]
# A person gets keypoints only with this much visible area (pixels) and this many visible
# keypoints; otherwise num_keypoints = 0, which COCO tools treat as "ignore" (loss mask, eval).
MIN_LABELLED_AREA = 256
MIN_VISIBLE_KEYPOINTS = 3
MAX_OVERLAP = 0.3
# A face point (nose, left/right eye, left/right ear) is visible when the cosine between its normal
# (from the head centre) and the direction to the camera exceeds this: ears show from the side.
FACE_FACING_MIN = (0.15, 0.15, 0.15, -0.25, -0.25)
# Version of the labelling rules, stored with each set's generator arguments so that a set written
# under older rules is rewritten. 2: hidden face points are unlabelled (v = 0), not v = 1.
LABEL_RULES = 2
# People stand this far from the camera (metres, log-uniform): a 1.7 m person at f = 0.9 x width
# spans 0.6 (2.5 m) to 0.15 (10 m) of the image width in height.
DEPTH_RANGE = (2.5, 10.0)
# body frame (x left, y up, z forward) -> camera frame (x right, y down, z forward) for a person
# facing the camera: a half turn about x
BODY_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


def sample_camera(rng: np.random.Generator, width: int, height: int) -> dict:
    """Pinhole camera: ~50-70 degree horizontal field of view, 1-2 m high, tilted down 0-15 deg."""
    focal = width * rng.uniform(0.75, 1.1)
    centre = np.array([width / 2, height / 2]) + rng.uniform(-0.03, 0.03, 2) * [width, height]
    return {"f": focal, "c": centre, "height": rng.uniform(1000, 2000), "tilt": rng.uniform(0, 15)}


def world_to_camera(points: np.ndarray, camera: dict) -> np.ndarray:
    """World (x right, y up, z towards the camera; ground y = 0) -> camera coordinates (mm)."""
    shifted = points - np.array([0.0, camera["height"], 0.0])
    return (shifted @ BODY_TO_CAMERA.T) @ rot_x(camera["tilt"]).T


def sample_people(
    rng: np.random.Generator,
    camera: dict,
    width: int,
    count: int,
    depth_range: tuple[float, float] = DEPTH_RANGE,
) -> list[dict]:
    """Up to `count` posed people at depth_range metres (log-uniform), mostly inside the view, kept
    0.7 m apart and overlapping each other in the image by at most MAX_OVERLAP (box IoU):
    occluded, not stacked."""
    near, far = 1000.0 * depth_range[0], 1000.0 * depth_range[1]
    people: list[dict] = []
    positions: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    for _ in range(count * 10):
        if len(people) == count:
            break
        depth = near * (far / near) ** rng.uniform(0, 1)  # log-uniform: as many near as far
        half_width = depth * (width / 2) / camera["f"]
        position = np.array([rng.uniform(-0.85, 0.85) * half_width, -depth])
        if any(np.linalg.norm(position - other) < 700 for other in positions):
            continue
        joints, face = pose_body(sample_bones(rng), sample_angles(rng))
        # facing: any yaw; a slight lean
        rotation = rot_y(rng.uniform(-180, 180)) @ rot_x(rng.uniform(-8, 8))
        rotation = rotation @ rot_z(rng.uniform(-6, 6))
        joints, face = joints @ rotation.T, face @ rotation.T
        offset = np.array([position[0], 30.0 - joints[:, 1].min(), position[1]])  # feet on y=0
        person = {
            "joints": world_to_camera(joints + offset, camera),
            "face": world_to_camera(face + offset, camera),
        }
        person["uv"] = project(person["joints"], camera)
        person["face_uv"] = project(person["face"], camera)
        box = np.concatenate([person["uv"].min(0), person["uv"].max(0)])
        if any(box_iou(box, other) > MAX_OVERLAP for other in boxes):
            continue
        person["materials"] = person_materials(rng)
        positions.append(position)
        boxes.append(box)
        people.append(person)
    return people


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / max(union, 1e-9))


def project(points: np.ndarray, camera: dict) -> np.ndarray:
    """(N, 3) camera mm -> (N, 2) pixels."""
    return camera["f"] * points[:, :2] / points[:, 2:3] + camera["c"]


def coco_keypoints(person: dict, index: int, labels: np.ndarray) -> np.ndarray:
    """(17, 3) COCO (x, y, v): v = 2 if this person's own part is on top at the keypoint (and a
    face point faces the camera), 1 if hidden, 0 (and x = y = 0) outside the image.

    Hidden face points (nose, eyes, ears) get 0, not 1: COCO labels these surface features only
    where they can be seen (in ../shared/data/coco_sample 1 of 46 labelled face points is v = 1;
    under this generator's earlier rule 660 of 977 were, mostly the faces of people turned away).
    OKS tolerates 2-4 px on a face point of a person 100 px tall, far less than a network can
    guess a face it cannot see, so such labels only measured, and trained, guessing."""
    height, width = labels.shape
    out = np.zeros((17, 3), np.float32)
    head = person["joints"][J["head"]]
    for k, (source, i) in enumerate(_COCO_SOURCES):
        uv = person["face_uv"][i] if source == "face" else person["uv"][i]
        col, row = int(round(uv[0])), int(round(uv[1]))
        if not (0 <= uv[0] <= width - 1 and 0 <= uv[1] <= height - 1):
            continue
        label = int(labels[row, col]) - 1
        visible = label // 32 == index and label % 32 in KEYPOINT_OWNERS[k]
        if source == "face":
            visible &= facing_camera(person["face"][i], head) > FACE_FACING_MIN[i]
        if visible or source != "face":
            out[k] = (uv[0], uv[1], 2 if visible else 1)
    return out


def render_image(
    index: int,
    seed: int,
    width: int,
    height: int,
    max_people: int,
    depth_range: tuple[float, float] = DEPTH_RANGE,
) -> tuple:
    """One image: (BGR uint8 image, camera dict, list of annotation dicts without ids)."""
    rng = np.random.default_rng([seed, index])
    camera = sample_camera(rng, width, height)
    count = int(rng.integers(1, max_people + 1))
    people = sample_people(rng, camera, width, count, depth_range)
    image = render_background(rng, width, height)
    labels = render_people(image, people, camera["f"], rng)
    image = cv2.GaussianBlur(image, (0, 0), 0.6)
    annotations = []
    for p, person in enumerate(people):
        mask = (labels > 0) & ((labels.astype(np.int32) - 1) // 32 == p)
        area = int(mask.sum())
        if area == 0:
            continue  # entirely hidden or outside: no annotation at all
        keypoints = coco_keypoints(person, p, labels)
        if area < MIN_LABELLED_AREA or (keypoints[:, 2] == 2).sum() < MIN_VISIBLE_KEYPOINTS:
            keypoints[:] = 0  # like COCO: too hidden to label -> masked out of the loss instead
        rows, cols = np.nonzero(mask)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        x0, y0 = float(cols.min()), float(rows.min())
        annotations.append({
            "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
            "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            "area": float(area),
            "bbox": [x0, y0, float(cols.max()) - x0 + 1, float(rows.max()) - y0 + 1],
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            "iscrowd": 0,
            "category_id": 1,
            "keypoints_3d": [[round(float(v), 1) for v in joint] for joint in person["joints"]],
        })  # fmt: skip
    camera_info = {"f": [float(camera["f"])] * 2, "c": [float(v) for v in camera["c"]]}
    return image, camera_info, annotations


def generate(
    out_dir: str | Path,
    num_images: int,
    seed: int = 0,
    size: tuple[int, int] = (368, 368),
    max_people: int = 5,
    json_name: str = "annotations.json",
    depth_range: tuple[float, float] = DEPTH_RANGE,
) -> Path:
    """Write num_images images to out_dir/images and the COCO json to out_dir/json_name.

    The json is written last and atomically, so its presence means the set is complete; its
    info["generator"] holds the arguments (`generator_params`), so a caller can tell whether an
    existing set is the one it asks for.
    """
    out_dir = Path(out_dir)
    width, height = size
    if num_images < 1 or width < 32 or height < 32 or max_people < 1:
        raise ValueError(
            f"synthetic_people: need num_images >= 1, size >= 32x32, max_people >= 1; got "
            f"{num_images}, {width}x{height}, {max_people}"
        )
    near, far = depth_range
    if not 0.5 <= near <= far:
        raise ValueError(
            f"synthetic_people: depth range needs 0.5 <= near <= far metres; got {near}, {far}"
        )
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        image, camera, people = render_image(i, seed, width, height, max_people, depth_range)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(out_dir / "images" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height,
                       "camera": camera})  # fmt: skip
        for person in people:
            person.update(id=len(annotations) + 1, image_id=i + 1)
            annotations.append(person)
    dataset = {
        "info": {
            "description": f"synthetic people, seed {seed}",
            "version": "1",
            "generator": generator_params(num_images, seed, size, max_people, depth_range),
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(COCO_NAMES),
                "skeleton": [list(p) for p in COCO_SKELETON],
                "keypoints_3d": list(JOINT_NAMES),
            }
        ],  # fmt: skip
    }
    path = out_dir / json_name
    handle, temporary = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump(dataset, file)
    os.replace(temporary, path)
    return path


def generator_params(
    num_images: int,
    seed: int,
    size: tuple[int, int],
    max_people: int,
    depth_range: tuple[float, float] = DEPTH_RANGE,
) -> dict:
    """The arguments that decide a synthetic set's content, as stored in its json (info)."""
    return {
        "num_images": int(num_images),
        "seed": int(seed),
        "size": [int(v) for v in size],
        "max_people": int(max_people),
        "depth_range": [float(v) for v in depth_range],
        "label_rules": LABEL_RULES,
    }


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 368x368, got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=parse_size, default=(368, 368), help="WxH, e.g. 512x320")
    parser.add_argument("--max-people", type=int, default=5)
    parser.add_argument(
        "--depth-range", type=float, nargs=2, default=DEPTH_RANGE, metavar=("NEAR", "FAR"),
        help="people's distance from the camera in metres (log-uniform)",
    )  # fmt: skip
    parser.add_argument("--json-name", default="annotations.json")
    args = parser.parse_args(argv)
    try:
        path = generate(args.out, args.num_images, args.seed, args.size, args.max_people,
                        args.json_name, tuple(args.depth_range))  # fmt: skip
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_images} images and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
