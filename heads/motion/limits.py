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
from .rotations import exp_map, skew

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


def _feature_weights() -> np.ndarray:
    """(D, 9, 5): the five quantities the angles are read from, each linear in the rotation L
    (flattened row-major): u1 . L b0, b0 . L b0, u2 . L b0 (the swung bone d = L b0 against
    the flex, rest and side directions), vee(L) . b0 and trace(L)."""
    out = np.zeros((len(DRIVEN), 3, 3, 5))
    for k, (b0, u1, u2) in enumerate(zip(REST_AXES, FLEX_DIRS, SIDE_DIRS)):
        out[k, ..., 0] = np.outer(u1, b0)  # u^T L b = sum_ij L_ij u_i b_j
        out[k, ..., 1] = np.outer(b0, b0)
        out[k, ..., 2] = np.outer(u2, b0)
        out[k, ..., 3] = 0.5 * skew(b0)  # vee(L) . b = sum_ij L_ij skew(b)_ij / 2
        out[k, ..., 4] = np.eye(3)
    return out.reshape(len(DRIVEN), 9, 5)


FEATURES = _feature_weights()


def limit_angles(local: np.ndarray, bones: np.ndarray | slice = slice(None)) -> np.ndarray:
    """(P, D, 3, 3) local rotations of the driven bones (or of the driven bones `bones`) ->
    (P, D, 3) angles (flex, side, twist) in radians."""
    shape = local.shape[:-2]
    flat = local.reshape(shape + (1, 9))
    return _angles((flat @ FEATURES[bones])[..., 0, :])


def _angles(q: np.ndarray) -> np.ndarray:
    """(..., 5) quantities of `_feature_weights` -> (..., 3) angles (flex, side, twist)."""
    # written into one array by the ufuncs themselves: this runs several times a solver step
    # on tiny arrays, where np.stack's and np.clip's Python wrappers cost more than the maths
    out = np.empty(q.shape[:-1] + (3,))
    np.arctan2(q[..., 0], q[..., 1], out=out[..., 0])
    np.arcsin(np.minimum(np.maximum(q[..., 2], -1.0), 1.0), out=out[..., 1])
    np.arctan2(q[..., 3], 0.5 + 0.5 * q[..., 4], out=out[..., 2])
    out[..., 2] *= 2.0
    return out


def limit_excess(angles: np.ndarray) -> np.ndarray:
    """(..., D, 3) angles -> how far each lies outside its range (radians; 0 inside)."""
    low, high = RANGES[..., 0], RANGES[..., 1]
    return np.maximum(angles - high, 0.0) + np.minimum(angles - low, 0.0)


def _turned_features(step: float) -> np.ndarray:
    """(D, 9, 3 axes x 5): `FEATURES` of L exp(step e_a) for each axis a, still linear in L:
    sum_ij (L T)_ij W_ij = sum_ik L_ik (W T^T)_ik."""
    turns = exp_map(np.eye(3) * step)  # (3, 3, 3): one small turn per axis
    weights = FEATURES.reshape(-1, 3, 3, 5)
    moved = np.einsum("dijq,akj->dikaq", weights, turns)
    return moved.reshape(len(DRIVEN), 9, 15)


_TURNED = {1e-4: _turned_features(1e-4)}


def angle_jacobian(local: np.ndarray, angles: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """(P, D, 3 angles, 3 axes): the change of each angle per radian of the update
    L <- L exp(d) of (P, D, 3, 3) rotations with (P, D, 3) angles, by forward differences (the
    angles are cheap; their closed-form derivatives are not). A limit's residual (the excess)
    changes as its angle does wherever it is outside the range, and not at all inside."""
    turned = _TURNED[step] if step in _TURNED else _turned_features(step)
    q = local.reshape(local.shape[:-2] + (1, 9)) @ turned  # (P, D, 1, 15)
    moved = _angles(q.reshape(local.shape[:-2] + (3, 5)))  # (P, D, 3 axes, 3 angles)
    change = np.swapaxes(moved, -1, -2) - angles[..., None]  # (P, D, 3 angles, 3 axes)
    change[..., 2, :] = (change[..., 2, :] + np.pi) % (2 * np.pi) - np.pi  # twist wraps
    return change / step
