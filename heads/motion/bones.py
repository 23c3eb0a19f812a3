"""A person's bone lengths, measured on their first frames and then frozen (XNect's
RescaleFrameNum, 2-100 frames).

Lengths are averaged over the frames where both ends of a bone are known, then left and right
are averaged (people are symmetric; it halves the noise). The girdle bones (neck -> shoulders,
pelvis -> hips) are measured as offsets in their frame: the shoulders' across and below the neck
in the chest frame (y along spine -> neck, x along right -> left shoulder), the hips' across and
below the pelvis (the pelvis frame is the hip triangle's own).
"""

from __future__ import annotations

import numpy as np

from ..skeletons import JOINTS21_NAMES
from .kinematics import MIRROR, NUM_JOINTS, PARENTS, RIGID, ROOT, split_name, tpose_offsets

MIN_BONE = 1.0  # mm: a shorter bone means the two joints coincide (bad input)
_NAME = {name: index for index, name in enumerate(JOINTS21_NAMES)}


class BadSkeletonError(ValueError):
    """3D joints from which no skeleton can be measured (zero-length bones, nothing finite)."""


def _frame_axes(across: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(T, 3) across and up directions -> (T, 3, 3) orthonormal frames (columns x, y, z), x along
    `across`, y = `up` made perpendicular to x; rows with a degenerate input are NaN."""
    x = across / np.linalg.norm(across, axis=-1, keepdims=True)
    y = up - (up * x).sum(-1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return np.stack([x, y, np.cross(x, y)], -1)


def _girdle(joints: np.ndarray, centre: int, left: int, right: int, up: np.ndarray) -> np.ndarray:
    """Mean (3,) offset of the left girdle joint from `centre` in the girdle frame (x across to
    the left, y = up), symmetrised with the right one (x mirrored)."""
    axes = _frame_axes(joints[:, left] - joints[:, right], up)  # (T, 3, 3)
    left_local = np.einsum("tij,ti->tj", axes, joints[:, left] - joints[:, centre])
    right_local = np.einsum("tij,ti->tj", axes, joints[:, right] - joints[:, centre])
    both = 0.5 * (left_local + right_local * np.array([-1.0, 1.0, 1.0]))
    both = both[np.isfinite(both).all(1)]
    return both.mean(0) if len(both) else np.full(3, np.nan)


def measure_bones(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 21, 3) joints of one person over frames (mm, NaN = unknown) -> (lengths (21,), girdles
    (21, 3)): each joint's bone length (NaN where never seen) and the rigid bones' offsets.

    Raises BadSkeletonError naming the bone when both ends coincide in every frame seen."""
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise BadSkeletonError(
            f"skeleton: need (frames, {NUM_JOINTS}, 3) joints, got {joints.shape}"
        )
    bones = joints - joints[:, np.maximum(PARENTS, 0)]  # (T, 21, 3)
    length = np.linalg.norm(bones, axis=-1)  # (T, 21), NaN where an end is unknown
    seen = np.isfinite(length)
    lengths = np.where(seen.any(0), np.nansum(length, 0) / np.maximum(seen.sum(0), 1), np.nan)
    for joint in range(NUM_JOINTS):
        if joint != ROOT and not RIGID[joint] and lengths[joint] < MIN_BONE:
            parent = JOINTS21_NAMES[PARENTS[joint]]
            raise BadSkeletonError(
                f"skeleton: bone {parent} -> {JOINTS21_NAMES[joint]} has length "
                f"{lengths[joint]:.2g} mm (its joints coincide); a skeleton needs distinct joints"
            )
    symmetric = np.nanmean(np.stack([lengths, lengths[MIRROR]]), 0)
    girdles = np.zeros((NUM_JOINTS, 3))
    chest_up = joints[:, _NAME["neck"]] - joints[:, _NAME["spine"]]
    shoulder = _girdle(joints, _NAME["neck"], _NAME["left_shoulder"], _NAME["right_shoulder"],
                       chest_up)  # fmt: skip
    mid_hips = 0.5 * (joints[:, _NAME["left_hip"]] + joints[:, _NAME["right_hip"]])
    hip = _girdle(joints, ROOT, _NAME["left_hip"], _NAME["right_hip"], joints[:, ROOT] - mid_hips)
    if not np.isfinite(hip).all():  # pelvis on the hip line: the triangle has no "up"
        half = 0.5 * np.linalg.norm(
            joints[:, _NAME["left_hip"]] - joints[:, _NAME["right_hip"]], axis=-1
        )
        hip = np.array([np.nanmean(half) if np.isfinite(half).any() else np.nan, 0.0, 0.0])
    for girdle, names in ((shoulder, ("left_shoulder", "right_shoulder")),
                          (hip, ("left_hip", "right_hip"))):  # fmt: skip
        if np.isfinite(girdle).all() and girdle[0] < MIN_BONE:
            raise BadSkeletonError(
                f"skeleton: {names[0]} and {names[1]} coincide ({2 * girdle[0]:.2g} mm apart)"
            )
        girdles[_NAME[names[0]]] = girdle
        girdles[_NAME[names[1]]] = girdle * np.array([-1.0, 1.0, 1.0])
    return symmetric, girdles


def fill_unseen(lengths: np.ndarray, girdles: np.ndarray, default: np.ndarray) -> tuple:
    """Bones never seen take the `default` skeleton's (lengths (21,), girdles (21, 3)), scaled by
    the ratio of the seen bones' total to the default's: a prior for what the data never showed."""
    seen = np.isfinite(lengths)
    seen[ROOT] = False
    ratio = lengths[seen].sum() / default[0][seen].sum() if seen.any() else 1.0
    lengths = np.where(np.isfinite(lengths), lengths, default[0] * ratio)
    unknown = ~np.isfinite(girdles).all(1)
    girdles = np.where(unknown[:, None], default[1] * ratio, girdles)
    return lengths, girdles


class BoneEstimator:
    """Running bone lengths of one person: `add(joints (21, 3))` for each of the first `frames`
    frames, then frozen; `offsets()` gives the current rest offsets (21, 3). A frame whose bones
    cannot be measured (coinciding joints) is left out and counted in `rejected`; until a frame
    is measured, the mean adult skeleton stands in."""

    def __init__(self, frames: int, default: tuple[np.ndarray, np.ndarray]) -> None:
        if not 2 <= frames <= 100:
            raise ValueError(
                f"skeleton: rescale frames must be 2..100 (XNect's range), got {frames}"
            )
        self.frames, self.default = frames, default
        self.seen: list[np.ndarray] = []
        self._offsets: np.ndarray | None = None
        self.rejected, self.error = 0, ""  # frames whose bones could not be measured, last why

    @property
    def frozen(self) -> bool:
        return len(self.seen) >= self.frames

    def add(self, joints: np.ndarray) -> None:
        """Take one frame's (21, 3) joints (NaN = unknown) while still measuring."""
        if self.frozen:
            return
        joints = np.asarray(joints, np.float64)
        if not np.isfinite(joints).any():
            return  # nothing to measure on; the frame does not count
        try:
            lengths, girdles = measure_bones(np.stack(self.seen + [joints]))
        except BadSkeletonError as err:  # this frame cannot be measured: the prior stands in
            self.rejected, self.error = self.rejected + 1, str(err)
            return
        self.seen.append(joints)
        self._offsets = tpose_offsets(*fill_unseen(lengths, girdles, self.default))

    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            return tpose_offsets(*self.default)
        return self._offsets


# A mean adult (mm), the prior for bones a person's first frames never showed: bone length by
# joint part, and the girdle offsets (across, up, forward) of the left shoulder and left hip.
_MEAN_LENGTHS = {"spine": 240.0, "neck": 260.0, "head": 120.0, "head_top": 110.0,
                 "elbow": 290.0, "wrist": 255.0, "hand": 90.0, "knee": 430.0, "ankle": 415.0,
                 "foot": 150.0}  # fmt: skip
_MEAN_GIRDLES = {"shoulder": (175.0, -25.0, 0.0), "hip": (95.0, -55.0, 0.0)}


def mean_skeleton() -> tuple[np.ndarray, np.ndarray]:
    """(lengths (21,), girdles (21, 3)) of a mean adult (`_MEAN_LENGTHS`, `_MEAN_GIRDLES`)."""
    lengths, girdles = np.zeros(NUM_JOINTS), np.zeros((NUM_JOINTS, 3))
    for joint, name in enumerate(JOINTS21_NAMES):
        side, part = split_name(name)
        if part in _MEAN_GIRDLES:
            girdles[joint] = np.array(_MEAN_GIRDLES[part]) * np.array([side, 1.0, 1.0])
            lengths[joint] = float(np.linalg.norm(girdles[joint]))
        elif part in _MEAN_LENGTHS:
            lengths[joint] = _MEAN_LENGTHS[part]
    return lengths, girdles
