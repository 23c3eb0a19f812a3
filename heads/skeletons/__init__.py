"""Skeleton facts, in one place: keypoint orders, limbs, flip permutations, OKS sigmas.

- `skeleton`: the `Skeleton` class (a 2D skeleton as data; flips, index maps, channel counts);
- `catalog`: the datasets' 2D skeletons (COCO-17, CrowdPose-14, MPII-16, AI Challenger-14,
  PoseTrack18-17, Human-Art-21) and the registry `SKELETONS` / `get_skeleton`;
- `coco`: COCO-17 and OpenPose-18, the order the XNect 2D branch predicts for COCO;
- `joints21`: the XNect-21 3D joints (MPI-INF-3DHP convention), DESIGN.md section 4.

Datasets must not import heads, so tools pass what datasets need (e.g. a skeleton's `flip`) as
arguments.
"""

from .catalog import (
    AIC14,
    COCO17,
    COCO17_FLIP,
    COCO17_FROM_OPENPOSE18,
    CROWDPOSE14,
    HUMANART21,
    LIMBS18_FLIP,
    MPII16,
    OPENPOSE18_FLIP,
    OPENPOSE18_FROM_COCO17,
    POSETRACK18,
    SAME_POINTS,
    SKELETONS,
    annotation_map,
    coco17_to_openpose18,
    get_skeleton,
    openpose18_to_coco17,
)
from .coco import (
    COCO17_NAMES,
    COCO17_SIGMAS,
    COCO17_SKELETON,
    LIMBS18,
    NECK,
    OPENPOSE18_NAMES,
)
from .joints21 import (
    COCO17_FROM_JOINTS21,
    JOINTS21_DETECTED,
    JOINTS21_FLIP,
    JOINTS21_FROM_COCO17,
    JOINTS21_FROM_OPENPOSE18,
    JOINTS21_NAMES,
    JOINTS21_NEIGHBOURS,
    JOINTS21_PARENTS,
    JOINTS21_ROOT,
    STAGE2_JOINTS,
    coco17_to_joints21_2d,
    kinematic_neighbours,
)
from .skeleton import Skeleton, index_map, mirror_name, mirror_permutation

__all__ = [
    "AIC14",
    "COCO17",
    "COCO17_FLIP",
    "COCO17_FROM_JOINTS21",
    "COCO17_FROM_OPENPOSE18",
    "COCO17_NAMES",
    "COCO17_SIGMAS",
    "COCO17_SKELETON",
    "CROWDPOSE14",
    "HUMANART21",
    "JOINTS21_DETECTED",
    "JOINTS21_FLIP",
    "JOINTS21_FROM_COCO17",
    "JOINTS21_FROM_OPENPOSE18",
    "JOINTS21_NAMES",
    "JOINTS21_NEIGHBOURS",
    "JOINTS21_PARENTS",
    "JOINTS21_ROOT",
    "LIMBS18",
    "LIMBS18_FLIP",
    "MPII16",
    "NECK",
    "OPENPOSE18_FLIP",
    "OPENPOSE18_FROM_COCO17",
    "OPENPOSE18_NAMES",
    "POSETRACK18",
    "SAME_POINTS",
    "SKELETONS",
    "STAGE2_JOINTS",
    "Skeleton",
    "annotation_map",
    "coco17_to_joints21_2d",
    "coco17_to_openpose18",
    "get_skeleton",
    "index_map",
    "kinematic_neighbours",
    "mirror_name",
    "mirror_permutation",
    "openpose18_to_coco17",
]
