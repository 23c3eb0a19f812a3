"""TensorBoard pictures for 3D pose training: each val image with its decoded 2D skeletons and,
beside it, the predicted root-relative 3D poses seen from the front and from the side
(orthographic, drawn with the demo's `draw_pose3d_panel`; person i has the same colour in all
three views)."""

from __future__ import annotations

import numpy as np
import torch

from selecsls.tools.visualization.draw import draw_pose3d_panel

from .pose2d_preview import draw_skeletons, to_rgb_uint8

# Root-relative poses all sit at the origin: person i is moved i x SPACING mm along x and z, so
# the front view (which drops z) shows them side by side along x and the side view (which drops
# x) side by side along z, instead of drawn on top of each other.
SPACING_MM = 900.0
VIEWS = (("front", 0.0), ("side", 90.0))  # (title, yaw in degrees)


def draw_pose3d_preview(
    image: torch.Tensor, keypoints: np.ndarray, poses: np.ndarray
) -> np.ndarray:
    """One (H, W + 2H, 3) uint8 panel: skeletons | front view | side view.

    image: (3, H, W) uint8 network input; keypoints: (P, 17, 3) decoded COCO keypoints in input
    pixels (score 0 = missing); poses: (P, 21, 3) root-relative mm in camera axes (x right,
    y down, z forward), NaN where a joint was not read out.
    """
    drawn = draw_skeletons(to_rgb_uint8(image), keypoints)
    height = drawn.shape[0]
    poses = np.asarray(poses, np.float64).reshape(-1, 21, 3)
    offsets = np.arange(len(poses))[:, None, None] * np.array([SPACING_MM, 0.0, SPACING_MM])
    people = list(enumerate(poses + offsets))
    views = [
        draw_pose3d_panel(people, (height, height), yaw_deg=yaw, pitch_deg=0.0, title=title)
        for title, yaw in VIEWS
    ]
    return np.concatenate([drawn, *views], 1)


class Pose3DPreviews:
    """Collects the first `count` images' panels during one evaluation pass."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.panels: list[np.ndarray] = []

    @property
    def full(self) -> bool:
        return len(self.panels) >= self.count

    def add(self, image: torch.Tensor, keypoints: np.ndarray, poses: np.ndarray) -> None:
        """See `draw_pose3d_preview`; ignored once `count` panels are held."""
        if not self.full:
            self.panels.append(draw_pose3d_preview(image, keypoints, poses))
