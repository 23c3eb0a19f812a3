"""Stage III in the demo: One-Euro filtered 2D/3D joints -> fitted skeletons, angles and BVH files.

`MotionCapture.update` takes one frame's tracked people (ids, 3D joints in camera mm, 2D joints
in pixels, the intrinsics), smooths each track's inputs with the demo's One-Euro filter
(`tracking.OneEuroFilter`; parameters in `InputFilters`, with units), fits the skeletons
(`heads.motion.SkeletonFitter`: bone lengths measured over a track's first frames, joint limits,
temporal smoothness) and keeps each track's poses, so that when a track ends (or the run does)
its motion is written as DIR/person_<id>.bvh (`heads.motion.bvh`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selecsls.heads.motion.bvh import ANGLE_NAMES, joint_angles, write_bvh
from selecsls.heads.motion.fitter import FitResult, SkeletonFitter
from selecsls.heads.motion.kinematics import Pose
from selecsls.heads.pose3d.geometry import default_intrinsics
from selecsls.tools.realtime.tracking import OneEuroFilter


@dataclass
class InputFilters:
    """One-Euro filters on the fitter's inputs (Casiez et al. 2012): cutoff at rest min_cutoff
    (Hz), speed coefficient beta (Hz per unit/s: per mm/s in 3D, per pixel/s in 2D), cutoff of
    the speed estimate d_cutoff (Hz). enabled=False passes the inputs through. The 3D values
    were chosen on the synthetic sequences of `tools.bench.motion` (docs/motion.md)."""

    min_cutoff_3d: float = 1.5
    beta_3d: float = 0.002
    min_cutoff_2d: float = 1.0
    beta_2d: float = 0.02
    d_cutoff: float = 1.0
    enabled: bool = True


@dataclass
class TrackMotion:
    """One track's filters, recorded poses and last angles (for continuous Euler angles)."""

    filter3d: OneEuroFilter
    filter2d: OneEuroFilter
    poses: list[Pose] = field(default_factory=list)
    offsets: np.ndarray | None = None
    angles: np.ndarray | None = None  # (N, 3) degrees, the last frame's


class MotionCapture:
    """Per-frame skeleton fitting of tracked people; BVH files into `bvh_dir` when given."""

    def __init__(
        self,
        fitter: SkeletonFitter | None = None,
        filters: InputFilters | None = None,
        bvh_dir: str | Path | None = None,
        fps: float = 30.0,
    ) -> None:
        self.fitter = fitter or SkeletonFitter()
        self.filters = filters or InputFilters()
        self.bvh_dir = Path(bvh_dir) if bvh_dir else None
        if self.bvh_dir is not None and not self.bvh_dir.is_dir():
            raise FileNotFoundError(f"--bvh {bvh_dir}: no such folder")
        self.fps = fps
        self.tracks: dict[int, TrackMotion] = {}
        self.written: list[Path] = []

    def _track(self, track_id: int) -> TrackMotion:
        if track_id not in self.tracks:
            s = self.filters
            self.tracks[track_id] = TrackMotion(
                OneEuroFilter(s.min_cutoff_3d, s.beta_3d, s.d_cutoff),
                OneEuroFilter(s.min_cutoff_2d, s.beta_2d, s.d_cutoff),
            )
        return self.tracks[track_id]

    def smooth(self, ids, joints3d, points2d, t: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Each track's One-Euro filtered (P, 21, 3) joints and (P, 21, 3) 2D points (the score
        column untouched); a joint that is missing (NaN 3D, score 0 2D) restarts its filter."""
        joints3d = np.array(joints3d, np.float64, copy=True)
        points2d = None if points2d is None else np.array(points2d, np.float64, copy=True)
        if not self.filters.enabled:
            return joints3d, points2d
        for person, track_id in enumerate(ids):
            track = self._track(track_id)
            found = np.isfinite(joints3d[person]).all(1)
            filtered = track.filter3d(np.nan_to_num(joints3d[person]), t, found)
            joints3d[person] = np.where(found[:, None], filtered, np.nan)
            if points2d is not None:
                seen = points2d[person, :, 2] > 0
                points2d[person, :, :2] = track.filter2d(points2d[person, :, :2], t, seen)
        return joints3d, points2d

    def update(self, ids, joints3d, points2d=None, f=None, c=None, t: float = 0.0, keep=()) -> dict:
        """One frame: ids (P,), joints3d (P, 21, 3) camera mm (NaN = missing), points2d
        (P, 21, 3) pixels + score or None, f, c intrinsics, t time (s), keep: ids the tracker
        still follows though unseen now (their BVH holds the last pose) -> {"result":
        FitResult, "angles": (P, N, 3) BVH joint angles in degrees (ANGLE_NAMES order)}."""
        ids = [int(i) for i in ids]
        joints3d, points2d = self.smooth(ids, joints3d, points2d, t)
        result: FitResult = self.fitter.update(
            ids, joints3d, points2d=points2d, f=f, c=c, keep=keep
        )
        for track_id in result.ended:
            self._end(track_id)
        for track_id in set(self.tracks).difference(ids):  # kept but unseen: hold the pose
            track = self.tracks[track_id]
            if self.bvh_dir is not None and track.poses:
                track.poses.append(track.poses[-1])
        angles = np.full((len(ids), len(ANGLE_NAMES), 3), np.nan)
        frames = result.frames
        for person, track_id in enumerate(ids):
            track = self._track(track_id)
            if not np.isfinite(result.joints[person]).all():
                continue
            angles[person] = joint_angles(frames[person : person + 1], track.angles)[0]
            track.angles = angles[person]
            track.offsets = result.offsets[person]
            if self.bvh_dir is not None:
                track.poses.append(result.pose.take([person]))
        return {"result": result, "angles": angles}

    def _end(self, track_id: int) -> None:
        track = self.tracks.pop(track_id, None)
        if track is None or self.bvh_dir is None or not track.poses:
            return
        pose = Pose(*(np.concatenate([getattr(p, k) for p in track.poses])
                      for k in ("root", "root_rotation", "local")))  # fmt: skip
        path = self.bvh_dir / f"person_{track_id}.bvh"
        self.written.append(write_bvh(path, pose, track.offsets, self.fps))

    def finish(self) -> list[Path]:
        """End every live track (writing their BVH files); the paths written over the run."""
        for track_id in list(self.tracks):
            self._end(track_id)
        return self.written

    def fit_frame(self, people: list[dict], prediction, frame_shape, t: float, live=()) -> dict:
        """The demo's frame: tracked people (dicts with "id", "index"), the frame's Prediction
        (poses3d camera mm, points2d pixels), frame (H, W, ...) shape (the intrinsics default
        from its size, as the 3D placement's do), time t (s), live: the tracker's track ids ->
        {id: {"joints" (21, 3) mm, "angles" (N, 3) degrees, "root" (3,) mm, "root_rotation"
        (3, 3)}} for the people fitted; {} without 3D poses."""
        if prediction.poses3d is None:
            return {}
        rows = [p["index"] for p in people]
        ids = [p["id"] for p in people]
        joints3d = np.asarray(prediction.poses3d, np.float64)[rows].reshape(len(rows), 21, 3)
        points2d = None
        if prediction.points2d is not None:
            points2d = np.asarray(prediction.points2d, np.float64)[rows].reshape(len(rows), 21, 3)
        f, c = default_intrinsics(int(frame_shape[1]), int(frame_shape[0]))
        out = self.update(ids, joints3d, points2d, f, c, t, keep=live)
        result, angles = out["result"], out["angles"]
        fitted = {}
        for k, track_id in enumerate(ids):
            if np.isfinite(result.joints[k]).all():
                fitted[track_id] = {"joints": result.joints[k], "angles": angles[k],
                                    "root": result.pose.root[k],
                                    "root_rotation": result.pose.root_rotation[k]}  # fmt: skip
        return fitted


def skeleton_json(entry: dict) -> dict:
    """A fitted person -> the JSON's "skeleton": joints_3d (21, 3) camera mm (0.1 mm), root
    position (camera mm) and rotation (3 x 3, body -> camera), and joint_angles {BVH joint:
    [z, x, y] degrees, R = Rz Rx Ry, Y-up, as in the BVH files}."""
    return {
        "joints_3d": np.round(entry["joints"], 1).tolist(),
        "root_position": np.round(entry["root"], 1).tolist(),
        "root_rotation": np.round(entry["root_rotation"], 5).tolist(),
        "joint_angles": {
            name: np.round(a, 2).tolist() for name, a in zip(ANGLE_NAMES, entry["angles"])
        },
    }
