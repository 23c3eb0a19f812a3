"""Training augmentation for 3D-labelled images: a random similarity that 3D can follow exactly.

A similarity of the image plane p' = s Q p + t (Q a rotation, or a reflection for a flip) is
exactly a pinhole camera with f' = s f and c' = s Q c + t looking at the joints rotated (or
mirrored) by Q about the optical axis: X'_xy = Q X_xy, Z' = Z. So `Augment3D` only returns its 2x3
matrix (like EvalResize) and `apply_to_camera` moves the camera and the 3D joints accordingly; a
matrix with negative determinant is a flip, and the caller swaps left/right joints (datasets know
no skeleton; tools pass the permutations).
"""

from __future__ import annotations

import cv2
import numpy as np

from .augment import PAD_VALUE, WorkerRandom, clean_visibility


class Augment3D(WorkerRandom):
    """Random scale (after fitting the longer side), rotation about the image centre, shift,
    horizontal flip and brightness/contrast; output size `input_size` (W, H).

    Called as (image (H, W, 3) uint8, keypoints (P, K, 3), ignore_mask (H, W)) -> (image,
    keypoints, ignore_mask, matrix (2, 3) original -> input pixels). Keypoints are moved, not
    permuted: a flip (det(matrix) < 0) leaves the left/right swap to the caller.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        scale: tuple[float, float] = (0.7, 1.3),
        rotation: float = 15.0,
        shift: float = 0.15,
        flip_probability: float = 0.5,
        colour: bool = True,
        seed: int | None = None,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.scale, self.rotation, self.shift = scale, rotation, shift
        self.flip_probability, self.colour = flip_probability, colour
        self.rng = np.random.default_rng(seed)

    def matrix(self, width: int, height: int) -> np.ndarray:
        """A random 2x3 original -> input matrix for an image of width x height."""
        out_w, out_h = self.input_size
        rng = self.rng
        scale = min(out_w / width, out_h / height) * rng.uniform(*self.scale)
        angle = np.radians(rng.uniform(-self.rotation, self.rotation))
        linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        if rng.random() < self.flip_probability:
            linear = np.diag([-1.0, 1.0]) @ linear
        centre_in = np.array([(width - 1) / 2, (height - 1) / 2])
        centre_out = np.array([(out_w - 1) / 2, (out_h - 1) / 2])
        centre_out = centre_out + rng.uniform(-self.shift, self.shift, 2) * [out_w, out_h]
        return np.hstack([linear, (centre_out - linear @ centre_in)[:, None]])

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, ignore_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._reseed_in_worker()
        matrix = self.matrix(image.shape[1], image.shape[0])
        size = self.input_size
        image = cv2.warpAffine(
            image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=PAD_VALUE
        )  # fmt: skip
        mask = cv2.warpAffine(ignore_mask, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0)
        points = np.asarray(keypoints, np.float32).copy()
        points[..., :2] = points[..., :2] @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2]
        points = clean_visibility(points, *size)
        if self.colour:
            gain, bias = self.rng.uniform(0.7, 1.3), self.rng.uniform(-30, 30)
            image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        return image, points, mask, matrix.astype(np.float32)


def apply_to_camera(
    matrix: np.ndarray, f: np.ndarray, c: np.ndarray, joints3d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """A similarity's 2x3 matrix applied to the camera and the 3D joints (module docstring):
    -> (f' (2,), c' (2,), joints3d' (..., 3), flipped)."""
    matrix = np.asarray(matrix, np.float64)
    linear = matrix[:, :2]
    determinant = np.linalg.det(linear)
    scale = np.sqrt(abs(determinant))
    turn = linear / max(scale, 1e-12)  # orthogonal: rotation, or reflection for a flip
    joints = np.asarray(joints3d, np.float64).copy()
    joints[..., :2] = joints[..., :2] @ turn.T
    return np.asarray(f) * scale, linear @ np.asarray(c) + matrix[:, 2], joints, determinant < 0
