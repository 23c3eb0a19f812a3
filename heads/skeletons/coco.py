"""COCO-17 and OpenPose-18: COCO's keypoint order, and the order the XNect 2D branch predicts.

- COCO-17: the order of COCO's person keypoints (annotations and pycocotools results).
- OpenPose-18: COCO's 17 plus the neck (mid-shoulder), in the OpenPose order; the XNect 2D branch
  trained on COCO predicts one heatmap per keypoint of this order (+ background) and one PAF per
  limb in LIMBS18. `catalog.COCO17` states the same facts as a `Skeleton`.
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
