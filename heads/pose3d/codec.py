"""The 3D location-map codec: root-relative 3D joints <-> the 63 Stage I location-map channels.

Conventions:
- 3D joints: (P, 21, 3) camera coordinates in millimetres, the 21-joint order of
  `heads.skeletons` (x right, y down, z forward); NaN marks an unlabelled joint. Targets are
  root-relative (pelvis at 0) and divided by `unit` (1000: the maps hold METRES, values ~ +-1).
- Channel 3j + c of the maps = coordinate c of joint j.
- Read-out locations: (P, 21, 3) 2D points (x, y, v-or-score) in input pixels, in the 21-joint order
  (`skeletons.coco17_to_joints21_2d` builds them from COCO keypoints: neck from the shoulders,
  head from the nose). Only the joints in JOINTS21_DETECTED have a 2D detection; the others'
  entries are ignored.
- Supervision: joint j's 3 channels are supervised in Gaussian-weighted neighbourhoods (sigma in
  input pixels) of the read-out locations of j itself and of its kinematic neighbours
  (JOINTS21_NEIGHBOURS), i.e. everywhere the decoder may read j. Where people's neighbourhoods
  overlap, each cell takes the person with the larger weight. People without 3D labels
  (has_3d False, e.g. COCO) write nothing: their weight is 0, so they train only the 2D branch.
- Decoding reads joint j's channels at the map cell nearest to its own detection, else at the
  first detected kinematic neighbour (parent first); the map geometry is `Pose2DCodec`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..pose2d.codec import Pose2DCodec
from ..pose2d.peaks import to_numpy
from ..skeletons import JOINTS21_DETECTED, JOINTS21_NAMES, JOINTS21_NEIGHBOURS, JOINTS21_ROOT

NUM_JOINTS = len(JOINTS21_NAMES)
# For each joint, the detected joints whose locations may carry its channels: itself, then its
# kinematic neighbours (parent first), restricted to joints the 2D branch detects.
READOUT_SOURCES: tuple[tuple[int, ...], ...] = tuple(
    tuple(k for k in (j, *JOINTS21_NEIGHBOURS[j]) if k in JOINTS21_DETECTED)
    for j in range(NUM_JOINTS)
)


def root_relative(joints3d: np.ndarray, root: int = JOINTS21_ROOT) -> np.ndarray:
    """(..., J, 3) -> the same minus the root joint."""
    joints3d = np.asarray(joints3d, np.float64)
    return joints3d - joints3d[..., root : root + 1, :]


@dataclass
class Pose3DCodec:
    """Encode people's 3D joints into location-map targets; decode maps at 2D detections.

    stride / size_divisor: map geometry (as the 2D codec); sigma: Gaussian weight sigma in input
    pixels; unit: millimetres per map unit; min_weight: cells with a lower weight are not
    supervised.
    """

    stride: int = 8
    size_divisor: int = 16
    sigma: float = 7.0
    unit: float = 1000.0
    min_weight: float = 0.01
    geometry: Pose2DCodec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.geometry = Pose2DCodec(stride=self.stride, size_divisor=self.size_divisor)

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        joints3d: np.ndarray,
        points2d: np.ndarray,
        input_size: tuple[int, int],
        has_3d: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """People -> {"locmaps": (63, h, w), "locmap_weights": (21, h, w)} float32.

        joints3d: (P, 21, 3) mm (camera or root-relative); points2d: (P, 21, 3) read-out locations
        in input pixels; input_size (W, H); has_3d: (P,) bool (default: all True).
        """
        width, height = self.geometry.map_size(input_size)
        joints3d = np.asarray(joints3d, np.float64).reshape(-1, NUM_JOINTS, 3)
        points2d = np.asarray(points2d, np.float32).reshape(-1, NUM_JOINTS, 3)
        people = len(joints3d)
        has_3d = np.ones(people, bool) if has_3d is None else np.asarray(has_3d, bool)
        targets = (root_relative(joints3d) / self.unit).astype(np.float32)  # (P, 21, 3)
        labelled3d = np.isfinite(targets).all(-1) & has_3d[:, None]  # (P, 21)
        weights = self._weights(points2d, width, height)  # (P, 21, h, w)
        weights *= labelled3d[..., None, None]
        locmaps = np.zeros((NUM_JOINTS, 3, height, width), np.float32)
        best = np.zeros((NUM_JOINTS, height, width), np.float32)
        if people:
            owner = weights.argmax(0)  # (21, h, w): the person that owns each cell
            best = np.take_along_axis(weights, owner[None], 0)[0]
            values = np.nan_to_num(targets)[owner, np.arange(NUM_JOINTS)[:, None, None]]
            locmaps = values.transpose(0, 3, 1, 2)  # (21, 3, h, w)
        best = np.where(best >= self.min_weight, best, 0).astype(np.float32)
        locmaps = locmaps * (best > 0)[:, None]
        return {
            "locmaps": locmaps.reshape(3 * NUM_JOINTS, height, width).astype(np.float32),
            "locmap_weights": best,
        }

    def _weights(self, points2d: np.ndarray, width: int, height: int) -> np.ndarray:
        """(P, 21, 3) -> (P, 21, h, w): per joint the max of Gaussians around its read-out
        locations (itself and its detected kinematic neighbours)."""
        people = len(points2d)
        out = np.zeros((people, NUM_JOINTS, height, width), np.float32)
        if people == 0:
            return out
        scale = -0.5 / self.sigma**2
        labelled = points2d[..., 2] > 0
        gx = np.exp(scale * (self.geometry.cell_centres(width) - points2d[..., 0, None]) ** 2)
        gy = np.exp(scale * (self.geometry.cell_centres(height) - points2d[..., 1, None]) ** 2)
        gx *= labelled[..., None]
        blobs = gy[..., :, None] * gx[..., None, :]  # (P, 21, h, w), 0 for unlabelled points
        for joint, sources in enumerate(READOUT_SOURCES):
            out[:, joint] = blobs[:, list(sources)].max(1)
        return out

    # ------------------------------------------------------------------ decode
    def cells(self, points2d: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(..., 2) input pixels -> (row, col) int arrays of the nearest map cells (clipped)."""
        grid = (np.asarray(points2d, np.float64) - (self.stride - 1) / 2) / self.stride
        col = np.clip(np.rint(grid[..., 0]), 0, width - 1).astype(np.int64)
        row = np.clip(np.rint(grid[..., 1]), 0, height - 1).astype(np.int64)
        return row, col

    def readout_joints(self, points2d: np.ndarray) -> np.ndarray:
        """(P, 21, 3) detections -> (P, 21) the joint whose location each joint is read at: itself
        if detected, else its first detected kinematic neighbour (parent first), else -1."""
        points2d = np.asarray(points2d).reshape(-1, NUM_JOINTS, 3)
        detected = points2d[..., 2] > 0
        source = np.full(detected.shape, -1, np.int64)
        for joint, sources in enumerate(READOUT_SOURCES):
            for k in reversed(sources):  # the first source in order wins
                source[:, joint] = np.where(detected[:, k], k, source[:, joint])
        return source

    def decode(self, locmaps, points2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One image's maps (63, h, w) and people's detections (P, 21, 3) in input pixels ->
        (joints (P, 21, 3) root-relative mm, found (P, 21) bool); joints with no detected
        read-out location are NaN."""
        maps = to_numpy(locmaps).astype(np.float32)
        _, height, width = maps.shape
        maps = maps.reshape(NUM_JOINTS, 3, height, width)
        points2d = np.asarray(points2d, np.float32).reshape(-1, NUM_JOINTS, 3)
        source = self.readout_joints(points2d)  # (P, 21)
        found = source >= 0
        where = np.take_along_axis(points2d[..., :2], np.maximum(source, 0)[..., None], 1)
        row, col = self.cells(where, width, height)
        joints = maps[np.arange(NUM_JOINTS)[None], :, row, col]  # (P, 21, 3)
        joints = joints.astype(np.float64) * self.unit
        joints[~found] = np.nan
        return joints, found

    def read_all(self, locmaps, points2d: np.ndarray, joints: tuple[int, ...]) -> np.ndarray:
        """All 63 channels read at each listed joint's own detection: (P, len(joints), 63)
        in map units (zeros where the joint is not detected); Stage II's read-out input."""
        maps = to_numpy(locmaps).astype(np.float32)
        channels, height, width = maps.shape
        points2d = np.asarray(points2d, np.float32).reshape(-1, NUM_JOINTS, 3)[:, list(joints)]
        row, col = self.cells(points2d[..., :2], width, height)
        values = maps[:, row, col].transpose(1, 2, 0)  # (P, J, 63)
        return values * (points2d[..., 2:3] > 0)


def locmap_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted L2 on the supervised cells: pred/target (N, 63, h, w), weights (N, 21, h, w).

    Normalised by the total weight, so images with few 3D people do not shrink the loss; exactly 0
    (with a gradient path) when the batch has no 3D-labelled person.
    """
    n, channels, h, w = pred.shape
    per_joint = (pred - target).pow(2).reshape(n, channels // 3, 3, h, w).sum(2)
    total = weights.sum()
    return (per_joint * weights).sum() / total.clamp(min=1e-6)
