"""XNect Stage III: kinematic skeleton fitting of tracked people, joint angles and BVH files.

- `kinematics`: the 21-joint tree (`skeletons.JOINTS21_PARENTS`), rest T-pose, forward
  kinematics and its Jacobian;
- `bones`: bone lengths measured on a person's first frames, then frozen;
- `limits`: soft anatomical joint limits;
- `solver`: one frame's batched Levenberg-Marquardt fit of the energy (3D, 2D, smoothness,
  limits, root depth);
- `fitter`: `SkeletonFitter`, one skeleton per track;
- `bvh`: BVH files (Y up, right-handed, "Zrotation Xrotation Yrotation" = Rz Rx Ry);
- `rotations`: rotation helpers (exponential map, Euler ZXY kept continuous).

Heads import nothing of tools or datasets: input smoothing (One-Euro) is the demo's
(`tools/realtime/fitting.py`).
"""

from .bones import BadSkeletonError, measure_bones
from .bvh import ANGLE_NAMES, bvh_text, write_bvh
from .fitter import FitResult, SkeletonFitter
from .kinematics import Pose, forward_kinematics
from .solver import FitWeights

__all__ = [
    "ANGLE_NAMES",
    "BadSkeletonError",
    "FitResult",
    "FitWeights",
    "Pose",
    "SkeletonFitter",
    "bvh_text",
    "forward_kinematics",
    "measure_bones",
    "write_bvh",
]
