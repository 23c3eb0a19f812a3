"""Soft anatomical joint limits on the local rotations of the skeleton's driven bones.

Each bone's local rotation L (relative to the frame it hangs from, identity = T-pose) is read as
three angles:
- flex: the bone's swing towards its main bending direction u1 (a knee bends backwards, an elbow
  forwards), atan2(d . u1, d . b0) with d = L b0 and b0 the rest direction;
- side: its swing across, asin(d . u2) (u2 points outwards for a left/right limb);
- twist: its turn about its own axis (swing-twist decomposition, 2 atan2(q_v . b0, q_w)).
A limit is a range per angle; the fitter's residual is how far an angle lies outside it
(radians), zero inside. Shoulders get no swing limits (the arm reaches everywhere, and any two
swing angles are singular somewhere on the sphere), only a twist range.
"""

from __future__ import annotations

import numpy as np

from ..skeletons import JOINTS21_NAMES
from .kinematics import DRIVEN, REST_DIRECTIONS, split_name
from .rotations import exp_map, vee

FREE = (-1e3, 1e3)
X, Y, Z = np.eye(3)
# part of the bone's end joint -> (flex direction u1, side direction u2 (x: outwards), ranges in
# degrees for flex, side, twist). Ranges are generous adult ranges of motion.
LIMITS_DEG: dict[str, tuple] = {
    "spine": (Z, X, (-30, 60), (-35, 35), (-45, 45)),  # lower back: bend forward, lean
    "neck": (Z, X, (-30, 45), (-30, 30), (-40, 40)),  # upper back
    "head": (Z, X, (-50, 70), (-45, 45), (-80, 80)),  # nod, tilt, turn
    "head_top": (Z, X, (-15, 15), (-15, 15), (-5, 5)),  # the skull is one bone with the head
    "elbow": (Z, Y, FREE, FREE, (-100, 100)),  # shoulder joint (upper arm)
    "wrist": (Z, Y, (-5, 150), (-10, 10), (-90, 90)),  # elbow: a forward hinge, pronation
    "hand": (Z, Y, (-70, 70), (-40, 40), (-10, 10)),  # wrist
    "knee": (Z, X, (-30, 125), (-30, 60), (-45, 45)),  # hip joint (thigh)
    "ankle": (-Z, X, (-5, 150), (-8, 8), (-30, 30)),  # knee: a backward hinge
    "foot": (-Y, X, (-40, 50), (-25, 25), (-25, 25)),  # ankle: toes down is positive
}


def _table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(b0, u1, u2 (D, 3), ranges (D, 3, 2) radians) for the driven bones, in DRIVEN order."""
    b0, u1, u2, ranges = [], [], [], []
    for joint in DRIVEN:
        side, part = split_name(JOINTS21_NAMES[joint])
        flex_dir, side_dir, *limits = LIMITS_DEG[part]
        b0.append(REST_DIRECTIONS[joint])
        u1.append(flex_dir)
        u2.append(side_dir * (side if side and side_dir[0] else 1.0))
        ranges.append(np.radians(np.array(limits, np.float64)))
    return np.array(b0), np.array(u1), np.array(u2), np.array(ranges)


REST_AXES, FLEX_DIRS, SIDE_DIRS, RANGES = _table()
FEATURE_NAMES = ("flex", "side", "twist")


def limit_angles(local: np.ndarray, bones: np.ndarray | slice = slice(None)) -> np.ndarray:
    """(P, D, 3, 3) local rotations of the driven bones (or of the driven bones `bones`) ->
    (P, D, 3) angles (flex, side, twist) in radians."""
    axes, flex_dirs, side_dirs = REST_AXES[bones], FLEX_DIRS[bones], SIDE_DIRS[bones]
    d = (local @ axes[..., None])[..., 0]
    flex = np.arctan2((d * flex_dirs).sum(-1), (d * axes).sum(-1))
    side = np.arcsin(np.clip((d * side_dirs).sum(-1), -1.0, 1.0))
    trace = np.trace(local, axis1=-2, axis2=-1)
    twist = 2.0 * np.arctan2((vee(local) * axes).sum(-1), 0.5 * (1.0 + trace))
    return np.stack([flex, side, twist], -1)


def limit_excess(angles: np.ndarray) -> np.ndarray:
    """(..., D, 3) angles -> how far each lies outside its range (radians; 0 inside)."""
    low, high = RANGES[..., 0], RANGES[..., 1]
    return np.maximum(angles - high, 0.0) + np.minimum(angles - low, 0.0)


def limit_residuals(local: np.ndarray, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(P, D, 3, 3) local rotations -> (excess (P, D, 3), jacobian (P, D, 3 angles, 3 axes)): the
    excess and its change per radian of the update L <- L exp(d), by forward differences (the
    angles are cheap; their closed-form derivatives are not), zero where an angle is inside."""
    angles = limit_angles(local)
    excess = limit_excess(angles)
    jac = np.zeros(excess.shape + (3,))
    people, bones = np.nonzero((excess != 0).any(-1))  # differentiate only where it matters
    if len(people) == 0:
        return excess, jac
    chosen = local[people, bones]  # (K, 3, 3)
    turns = exp_map(np.eye(3) * step)  # (3, 3, 3): one small turn per axis
    moved = np.stack([_angles_of(chosen @ turn, bones) for turn in turns], -1)  # (K, 3, 3 axes)
    change = moved - angles[people, bones][..., None]
    change[..., 2, :] = (change[..., 2, :] + np.pi) % (2 * np.pi) - np.pi  # twist wraps
    outside = (excess[people, bones] != 0)[..., None]
    jac[people, bones] = np.where(outside, change / step, 0.0)
    return excess, jac


def _angles_of(local: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """`limit_angles` of (K, 3, 3) rotations of the driven bones `bones` (K,) -> (K, 3)."""
    return limit_angles(local[None], bones)[0]
