"""XNect Stage III for many people: one kinematic skeleton per track, fitted every frame.

    fitter = SkeletonFitter()
    result = fitter.update(ids, joints3d, points2d=points2d, f=f, c=c)  # once per frame

A new track id starts a new skeleton (bone lengths measured over its first `rescale_frames`
frames, then frozen; its first pose from an analytic inverse kinematics); an id missing from a
frame's list ends its track (the caller's tracker decides how long a person may be unseen). The
people of a frame are solved together (`solver.solve_frame`), each warm-started from their last
pose. Inputs should already be smoothed if wanted (the demo One-Euro filters them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..skeletons import JOINTS21_NAMES
from .bones import BadSkeletonError, BoneEstimator, mean_skeleton
from .kinematics import DRIVEN, NUM_JOINTS, PARENTS, RIGID, ROOT, Pose, forward_kinematics
from .rotations import kabsch
from .solver import FitWeights, FrameInputs, solve_frame

_CHILDREN = [np.flatnonzero(j == PARENTS) for j in range(NUM_JOINTS)]
FEET = [JOINTS21_NAMES.index(name) for name in ("left_foot", "right_foot")]  # foot contact


@dataclass
class Track:
    """One person's skeleton: bone estimator, last pose (P = 1) and last two fitted joints."""

    bones: BoneEstimator
    pose: Pose | None = None
    history: list[np.ndarray] = field(default_factory=list)  # last fitted (21, 3), newest last
    frames: int = 0
    inputs: list[np.ndarray] = field(default_factory=list)  # last two input (21, 3) joints
    jitter: float | None = None  # running mean of the input's per-frame acceleration (mm)

    def add_input(self, joints: np.ndarray) -> None:
        """Remember an input frame and update the input's jitter: how far the input moves from
        its own constant-velocity prediction, which on noisy input is mostly the noise."""
        if len(self.inputs) == 2:
            accel = _length(joints - 2 * self.inputs[1] + self.inputs[0])
            accel = accel[np.isfinite(accel)]
            if len(accel):
                value = float(np.mean(accel))
                self.jitter = value if self.jitter is None else 0.8 * self.jitter + 0.2 * value
        self.inputs = (self.inputs + [joints])[-2:]


@dataclass
class FitResult:
    """One frame's fit for the people passed in (same order): ids, joints (P, 21, 3) camera mm
    (NaN for a person that could not be fitted yet), pose (P people), offsets (P, 21, 3) rest
    offsets, the ids of the tracks that ended at this frame, and frames (P, 21, 3, 3) the bone
    frames (`kinematics.forward_kinematics`)."""

    ids: list[int]
    joints: np.ndarray
    pose: Pose
    offsets: np.ndarray
    ended: list[int]
    frames: np.ndarray


def initial_pose(joints: np.ndarray, offsets: np.ndarray) -> Pose:
    """Analytic inverse kinematics of one person: (21, 3) joints (NaN = unknown), (21, 3) rest
    offsets -> Pose (P = 1). Each frame is aligned, parents first, to its bone and the rigid
    bones hanging from it (Wahba; the shortest turn for a single bone, so no twist is invented)."""
    frames = np.zeros((NUM_JOINTS, 3, 3))
    local = np.broadcast_to(np.eye(3), (NUM_JOINTS, 3, 3)).copy()
    finite = np.isfinite(joints).all(1)
    root = joints[ROOT] if finite[ROOT] else np.nanmean(joints, 0)

    def hanging(joint: int, start: np.ndarray) -> tuple[list, list]:
        rest, seen = [], []
        for child in _CHILDREN[joint]:
            if RIGID[child]:
                rest.append(offsets[child])
                seen.append(joints[child] - start)
        return rest, seen

    rest, seen = hanging(ROOT, root)
    weights = [1.0] * len(rest)
    for child in _CHILDREN[ROOT]:  # the spine hints the pelvis's tilt, lightly
        if not RIGID[child]:
            rest.append(offsets[child])
            seen.append(joints[child] - root)
            weights.append(0.3)
    frames[ROOT] = kabsch(np.array(rest), np.array(seen), np.array(weights))
    for child in _CHILDREN[ROOT]:
        if RIGID[child]:
            frames[child] = frames[ROOT]
    for joint in DRIVEN:
        parent = int(PARENTS[joint])
        anchor = frames[parent]
        rest, seen = hanging(joint, joints[joint])
        rest.insert(0, offsets[joint])
        seen.insert(0, joints[joint] - joints[parent])
        seen_local = np.array(seen) @ anchor  # anchor^T v for each row v
        local[joint] = kabsch(np.array(rest), seen_local, np.ones(len(rest)))
        frames[joint] = anchor @ local[joint]
        for child in _CHILDREN[joint]:
            if RIGID[child]:
                frames[child] = frames[joint]
    return Pose(root[None].copy(), frames[ROOT][None].copy(), local[None])


class SkeletonFitter:
    """Stage III over tracks. rescale_frames: frames that measure each person's bones (2-100);
    weights: the energy's weights and step counts (`solver.FitWeights`)."""

    def __init__(self, rescale_frames: int = 10, weights: FitWeights | None = None) -> None:
        BoneEstimator(rescale_frames, mean_skeleton())  # validates the count early
        self.rescale_frames = rescale_frames
        self.weights = weights or FitWeights()
        self.tracks: dict[int, Track] = {}
        self._default = mean_skeleton()

    def update(
        self,
        ids: list[int],
        joints3d: np.ndarray,
        conf3d: np.ndarray | None = None,
        points2d: np.ndarray | None = None,
        f=None,
        c=None,
        keep=(),
    ) -> FitResult:
        """ids (P,) track ids; joints3d (P, 21, 3) camera mm (NaN = missing); conf3d (P, 21)
        (default 1 where finite); points2d (P, 21, 3) pixels + score (optional, with f, c the
        intrinsics, scalars or (2,)). Tracks in neither `ids` nor `keep` (ids the caller's
        tracker still follows though unseen this frame) end; a kept track resumes from its last
        pose, its smoothness restarting (its last motion is stale)."""
        ids = [int(i) for i in ids]
        joints3d = np.asarray(joints3d, np.float64).reshape(len(ids), NUM_JOINTS, 3)
        if len(set(ids)) != len(ids):
            raise ValueError(f"skeleton fitter: track ids repeat within a frame: {ids}")
        kept = {int(i) for i in keep}
        ended = [i for i in self.tracks if i not in ids and i not in kept]
        for i in ended:
            del self.tracks[i]
        for i in kept.difference(ids).intersection(self.tracks):
            self.tracks[i].history = []
            self.tracks[i].inputs = []
        data = self._inputs(ids, joints3d, conf3d, points2d, f, c)
        for person, i in enumerate(ids):
            track = self.tracks.setdefault(
                i, Track(BoneEstimator(self.rescale_frames, self._default))
            )
            track.bones.add(np.where(data.conf3d[person, :, None] > 0, joints3d[person], np.nan))
        offsets = (
            np.stack([self.tracks[i].bones.offsets() for i in ids])
            if ids
            else np.zeros((0, NUM_JOINTS, 3))
        )
        pose = Pose.rest(len(ids))
        fresh = np.array([self.tracks[i].pose is None for i in ids], bool)
        for person in np.flatnonzero(fresh):
            if np.isfinite(joints3d[person]).any():
                start = initial_pose(joints3d[person], offsets[person])
                pose.root[person], pose.root_rotation[person] = (
                    start.root[0],
                    start.root_rotation[0],
                )
                pose.local[person] = start.local[0]
        for person in np.flatnonzero(~fresh):
            last = self.tracks[ids[person]].pose
            pose.root[person], pose.root_rotation[person] = last.root[0], last.root_rotation[0]
            pose.local[person] = last.local[0]
        fitted = np.flatnonzero(~fresh | np.isfinite(joints3d).any((1, 2)))
        joints = np.empty((len(ids), NUM_JOINTS, 3))
        frames = np.empty((len(ids), NUM_JOINTS, 3, 3))
        for group, steps in ((fitted[fresh[fitted]], self.weights.first_iterations),
                             (fitted[~fresh[fitted]], self.weights.iterations)):  # fmt: skip
            if len(group) and len(group) == len(ids):  # all in one solve: no gather, no scatter
                pose, joints, frames = solve_frame(
                    pose, offsets, data, self.weights, steps, return_joints=True
                )
            elif len(group):
                part, joints[group], frames[group] = solve_frame(
                    pose.take(group), offsets[group], _take(data, group), self.weights, steps,
                    return_joints=True,
                )  # fmt: skip
                pose.root[group], pose.root_rotation[group], pose.local[group] = (
                    part.root,
                    part.root_rotation,
                    part.local,
                )
        is_fitted = np.zeros(len(ids), bool)
        is_fitted[fitted] = True
        unfitted = np.flatnonzero(~is_fitted)
        if len(unfitted):  # their rest frames, as forward kinematics gives them
            joints[unfitted], frames[unfitted] = forward_kinematics(
                pose.take(unfitted), offsets[unfitted]
            )
        joints[unfitted] = np.nan
        for person in fitted:
            track = self.tracks[ids[person]]
            track.pose = pose.take([person])
            track.history = (track.history + [joints[person]])[-2:]
            track.add_input(np.where(data.conf3d[person, :, None] > 0, joints3d[person], np.nan))
            track.frames += 1
        return FitResult(ids, joints, pose, offsets, ended, frames)

    def _inputs(self, ids, joints3d, conf3d, points2d, f, c) -> FrameInputs:
        count = len(ids)
        finite = np.isfinite(joints3d).all(-1)
        conf = np.ones((count, NUM_JOINTS)) if conf3d is None else np.asarray(conf3d, np.float64)
        conf = np.where(finite & np.isfinite(conf), np.maximum(conf, 0.0), 0.0)
        points = np.zeros((count, NUM_JOINTS, 3))
        if points2d is not None:
            if f is None or c is None:
                raise ValueError("skeleton fitter: 2D points need the camera intrinsics f and c")
            points = np.asarray(points2d, np.float64).reshape(count, NUM_JOINTS, 3)
        conf2d = np.where(np.isfinite(points).all(-1), np.maximum(points[..., 2], 0.0), 0.0)
        predicted = np.zeros((count, NUM_JOINTS, 3))
        has_prediction = np.zeros(count)
        depth_prev = np.full(count, np.nan)
        contact = np.zeros((count, NUM_JOINTS))
        anchor = np.zeros((count, NUM_JOINTS, 3))
        for person, i in enumerate(ids):
            track = self.tracks.get(i)
            if track is None or not track.history:
                continue
            last = track.history[-1]
            previous = track.history[-2] if len(track.history) > 1 else last
            predicted[person] = 2 * last - previous  # constant velocity
            has_prediction[person] = 1.0
            depth_prev[person] = track.pose.root[0, 2]
            anchor[person] = last
            if len(track.history) > 1 and track.jitter is not None:
                contact[person] = self._contact(track, joints3d[person], last, previous)
        return FrameInputs(
            _finite(joints3d), conf, _finite(points[..., :2]), conf2d,
            _pair(1.0 if f is None else f), _pair(0.0 if c is None else c),
            predicted, has_prediction, depth_prev, contact, anchor,
        )  # fmt: skip

    def _contact(self, track: Track, joints, last, previous) -> np.ndarray:
        """(21,) foot-contact weights (`solver`'s term): a foot whose fitted speed was under
        `contact_speed` stands; its pin lets go as the input foot moves away from where it
        stood by more than the input's own jitter explains (x `contact_release`), so exact
        input is followed at once and noisy input cannot slide a standing foot."""
        w = self.weights
        contact = np.zeros(NUM_JOINTS)
        speed = _length(last[FEET] - previous[FEET])
        away = _length(joints[FEET] - last[FEET])
        scale = max(w.contact_release * track.jitter, 1.0)
        release = np.where(np.isfinite(away), 1.0 / (1.0 + (away / scale) ** 2), 1.0)
        contact[FEET] = (speed < w.contact_speed) * release
        return contact


# Small helpers for the per-frame path, where numpy's Python wrappers (nan_to_num,
# broadcast_to, linalg.norm) cost more than the arithmetic on 21 joints.
def _finite(values: np.ndarray) -> np.ndarray:
    """NaN and inf -> 0."""
    return np.where(np.isfinite(values), values, 0.0)


def _pair(value) -> np.ndarray:
    """A scalar or (2,) intrinsic -> (2,) float64."""
    out = np.empty(2)
    out[:] = value
    return out


def _length(vectors: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...,) Euclidean lengths."""
    return np.sqrt((vectors * vectors).sum(-1))


def _take(data: FrameInputs, index: np.ndarray) -> FrameInputs:
    """The inputs of the people `index`."""
    per_person = ("joints3d", "conf3d", "points2d", "conf2d", "predicted", "has_prediction",
                  "depth_prev", "contact", "anchor")  # fmt: skip
    values = {k: None if getattr(data, k) is None else getattr(data, k)[index] for k in per_person}
    return FrameInputs(f=data.f, c=data.c, **values)


__all__ = ["BadSkeletonError", "FitResult", "SkeletonFitter", "initial_pose"]
