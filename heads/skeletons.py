"""Skeleton facts, in one place: keypoint orders, limbs, flip permutations, OKS sigmas.

Three skeletons are used:
- COCO-17: the order of COCO's person keypoints (annotations and pycocotools results).
- OpenPose-18: COCO's 17 plus the neck (mid-shoulder), in the OpenPose order; the XNect 2D branch
  predicts one heatmap per keypoint of this order (+ background) and one PAF per limb in LIMBS18.
- XNect-21: the 3D joints of the XNect release (MPI-INF-3DHP convention), DESIGN.md section 4.

Datasets must not import heads, so tools pass what datasets need (e.g. COCO17_FLIP) as arguments.
"""

from __future__ import annotations

import numpy as np

COCO17_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# pycocotools' default sigmas for the 17 COCO keypoints (used for OKS).
COCO17_SIGMAS: np.ndarray = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62]
        + [1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)

# COCO's own skeleton (0-based), only for drawing.
COCO17_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

OPENPOSE18_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)

NECK = OPENPOSE18_NAMES.index("neck")

# The 19 limbs (PAF pairs) of OpenPose's COCO model, as (from, to) in the OpenPose-18 order. The
# order is a breadth-first walk from the neck, which greedy grouping relies on: a limb's first
# keypoint is usually already assigned to a person when the limb is processed. The last two
# (shoulder -> ear) are redundant links that close loops and repair broken chains.
# PAF channels of limb i are (2i, 2i + 1) = (x, y) components of the unit vector from -> to.
LIMBS18: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)  # fmt: skip


def _permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    """For each name, the index of its left/right mirror (itself if central)."""

    def mirror(name: str) -> str:
        if name.startswith("left_"):
            return "right_" + name[5:]
        if name.startswith("right_"):
            return "left_" + name[6:]
        return name

    return tuple(names.index(mirror(n)) for n in names)


def _index_map(to_names: tuple[str, ...], from_names: tuple[str, ...]) -> tuple[int, ...]:
    """For each name of `to_names`, its index in `from_names` (-1 where absent)."""
    return tuple(from_names.index(n) if n in from_names else -1 for n in to_names)


# Under a horizontal flip, keypoint i of the flipped image is keypoint FLIP[i] of the original.
COCO17_FLIP: tuple[int, ...] = _permutation(COCO17_NAMES)
OPENPOSE18_FLIP: tuple[int, ...] = _permutation(OPENPOSE18_NAMES)

# OPENPOSE18_FROM_COCO17[i] = COCO index of OpenPose keypoint i (-1 for the neck, which is derived).
OPENPOSE18_FROM_COCO17: tuple[int, ...] = _index_map(OPENPOSE18_NAMES, COCO17_NAMES)
# COCO17_FROM_OPENPOSE18[k] = OpenPose index of COCO keypoint k.
COCO17_FROM_OPENPOSE18: tuple[int, ...] = _index_map(COCO17_NAMES, OPENPOSE18_NAMES)


def _limb_flip(limbs: tuple[tuple[int, int], ...], flip: tuple[int, ...]) -> tuple[int, ...]:
    """Limb i of the flipped image is limb LIMB_FLIP[i] of the original (its PAF x negated)."""
    index = {limb: i for i, limb in enumerate(limbs)}
    return tuple(index[(flip[a], flip[b])] for a, b in limbs)


LIMBS18_FLIP: tuple[int, ...] = _limb_flip(LIMBS18, OPENPOSE18_FLIP)


def coco17_to_openpose18(keypoints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) COCO (x, y, v) -> (..., 18, 3) OpenPose order with the neck added.

    The neck is the shoulders' midpoint, labelled only when both shoulders are (v = the smaller
    of the two), as in OpenPose's training data.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    index = np.array(OPENPOSE18_FROM_COCO17)
    out = keypoints[..., np.maximum(index, 0), :].copy()
    left = keypoints[..., COCO17_NAMES.index("left_shoulder"), :]
    right = keypoints[..., COCO17_NAMES.index("right_shoulder"), :]
    both = (left[..., 2] > 0) & (right[..., 2] > 0)
    out[..., NECK, :2] = (left[..., :2] + right[..., :2]) / 2
    out[..., NECK, 2] = np.where(both, np.minimum(left[..., 2], right[..., 2]), 0)
    out[..., NECK, :2] *= both[..., None]
    return out


def openpose18_to_coco17(keypoints: np.ndarray) -> np.ndarray:
    """(..., 18, C) OpenPose order -> (..., 17, C) COCO order (the neck is dropped)."""
    return np.asarray(keypoints)[..., list(COCO17_FROM_OPENPOSE18), :]


# ---------------------------------------------------------------------------------------------
# XNect-21 3D skeleton (DESIGN.md section 4), MPI-INF-3DHP order; the root is the pelvis.
JOINTS21_NAMES: tuple[str, ...] = (
    "head_top",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "pelvis",
    "spine",
    "head",
    "right_hand",
    "left_hand",
    "right_foot",
    "left_foot",
)
JOINTS21_ROOT = JOINTS21_NAMES.index("pelvis")

# Kinematic tree: parent of each joint (-1 for the root).
JOINTS21_PARENTS: tuple[int, ...] = (
    16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1, 4, 7, 10, 13,
)  # fmt: skip
JOINTS21_FLIP: tuple[int, ...] = _permutation(JOINTS21_NAMES)

# Stage II reads 14 joints: the first 14 of the 21, with the head instead of the head top.
STAGE2_JOINTS: tuple[int, ...] = (16, *range(1, 14))


def kinematic_neighbours(
    parents: tuple[int, ...] = JOINTS21_PARENTS,
) -> tuple[tuple[int, ...], ...]:
    """For each joint, its parent and children (the joints whose 2D location can stand in for it
    in the 3D read-out when it is not detected), parent first."""
    children: list[list[int]] = [[] for _ in parents]
    for joint, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(joint)
    return tuple(tuple(([p] if p >= 0 else []) + children[j]) for j, p in enumerate(parents))


JOINTS21_NEIGHBOURS: tuple[tuple[int, ...], ...] = kinematic_neighbours()

# JOINTS21_FROM_COCO17[j] = COCO index of 3D joint j, -1 where COCO has no such keypoint.
JOINTS21_FROM_COCO17: tuple[int, ...] = _index_map(JOINTS21_NAMES, COCO17_NAMES)

# The 2D detection that stands for each 3D joint in the Stage I read-out and in Stage II's 2D input:
# JOINTS21_FROM_OPENPOSE18[j] = OpenPose-18 index, -1 where the 2D branch detects no such point
# (head top, pelvis, spine, hands, feet: they are read at a kinematic neighbour's location). The
# 2D branch has no head-centre keypoint; the nose, ~10 cm in front of it, stands in for it.
_READOUT_ALIASES = {"head": "nose"}
JOINTS21_FROM_OPENPOSE18: tuple[int, ...] = tuple(
    OPENPOSE18_NAMES.index(_READOUT_ALIASES.get(n, n))
    if _READOUT_ALIASES.get(n, n) in OPENPOSE18_NAMES
    else -1
    for n in JOINTS21_NAMES
)
# The 3D joints with a 2D detection of their own (the read-out locations).
JOINTS21_DETECTED: tuple[int, ...] = tuple(
    j for j, k in enumerate(JOINTS21_FROM_OPENPOSE18) if k >= 0
)


def coco17_to_joints21_2d(keypoints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) COCO (x, y, score-or-v) -> (..., 21, 3) 2D points in the 21-joint order via
    JOINTS21_FROM_OPENPOSE18 (neck from the shoulders, head from the nose); joints without a 2D
    detection get (0, 0, 0)."""
    openpose = coco17_to_openpose18(keypoints)
    index = np.array(JOINTS21_FROM_OPENPOSE18)
    out = openpose[..., np.maximum(index, 0), :].copy()
    out[..., index < 0, :] = 0
    return out


# COCO17_FROM_JOINTS21[k] = 3D-joint index of COCO keypoint k, -1 for the face points: the 2D
# keypoints of a 3D-only person (MuCo) for the 2D branch (`datasets.muco` takes it as an argument).
COCO17_FROM_JOINTS21: tuple[int, ...] = _index_map(COCO17_NAMES, JOINTS21_NAMES)
