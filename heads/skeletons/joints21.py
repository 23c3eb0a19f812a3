"""XNect-21: the 3D joints of the XNect release (MPI-INF-3DHP convention), DESIGN.md section 4,
and how the 2D detections stand in for them."""

from __future__ import annotations

import numpy as np

from .catalog import coco17_to_openpose18
from .coco import COCO17_NAMES, OPENPOSE18_NAMES
from .skeleton import index_map, mirror_permutation

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
JOINTS21_FLIP: tuple[int, ...] = mirror_permutation(JOINTS21_NAMES)

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
JOINTS21_FROM_COCO17: tuple[int, ...] = index_map(JOINTS21_NAMES, COCO17_NAMES)

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
COCO17_FROM_JOINTS21: tuple[int, ...] = index_map(COCO17_NAMES, JOINTS21_NAMES)
