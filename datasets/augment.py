"""Geometric and colour augmentation for multi-person keypoints (albumentations 2.0.8).

Every transform takes and returns (image (H, W, 3) uint8 RGB, keypoints (P, K, 3) (x, y, v),
ignore_mask (H, W) uint8) and, for evaluation, the 2x3 matrix from original to input pixels.
Pixel centres are at integer coordinates throughout (as albumentations and cv2.warpAffine do).

Pitfalls handled here (DESIGN.md section 5): keypoints go to albumentations as one (P*K, 3) array
with visibility as an extra column and remove_invisible=False, so every keypoint comes back in
order; visibility is recomputed from the image bounds afterwards; the horizontal flip is ours, and
swaps left/right keypoints with the permutation the caller passes in (datasets know no skeleton).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

# ImageNet mean in RGB 0..255: padding with it becomes 0 after normalisation.
PAD_VALUE = (124, 116, 104)


def clean_visibility(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Set v = 0 (and x = y = 0) for keypoints outside the image or unlabelled (COCO convention)."""
    out = keypoints.astype(np.float32).copy()
    x, y = out[..., 0], out[..., 1]
    # pixel k spans [k - 0.5, k + 0.5)
    inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
    out[..., 2] = np.where(inside & (out[..., 2] > 0), out[..., 2], 0)
    out[out[..., 2] == 0] = 0
    return out


def flip_horizontal(
    image: np.ndarray,
    keypoints: np.ndarray,
    ignore_mask: np.ndarray,
    flip_permutation: Sequence[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror image and mask; x -> W - 1 - x and keypoint k takes the place of flip_permutation[k]
    (a left wrist becomes the right wrist of the mirrored person)."""
    width = image.shape[1]
    flipped = keypoints[:, list(flip_permutation)].copy()
    labelled = flipped[..., 2] > 0
    flipped[..., 0] = np.where(labelled, width - 1 - flipped[..., 0], 0)
    return image[:, ::-1].copy(), flipped, ignore_mask[:, ::-1].copy()


class TrainAugment:
    """Random scale, rotation, crop/pad to `input_size` (W, H), flip with left/right swap, colour.

    The image is first fitted so its longer side matches the input's, then scaled by a factor in
    `scale`, rotated by up to `rotation` degrees, padded and randomly cropped to the input size.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        flip_permutation: Sequence[int],
        scale: tuple[float, float] = (0.6, 1.4),
        rotation: float = 30.0,
        flip_probability: float = 0.5,
        colour: bool = True,
        seed: int | None = None,
    ) -> None:
        width, height = input_size
        self.input_size = (int(width), int(height))
        self.flip_permutation = tuple(int(i) for i in flip_permutation)
        self.flip_probability = flip_probability
        self.rng = np.random.default_rng(seed)
        self._seeded_for: tuple[int, int] | None = None
        border = {"border_mode": cv2.BORDER_CONSTANT, "fill": PAD_VALUE, "fill_mask": 0}
        steps = [
            A.LongestMaxSize(max_size=max(width, height)),
            A.Affine(scale=scale, rotate=(-rotation, rotation), keep_ratio=True, p=1.0, **border),
            A.PadIfNeeded(min_height=height, min_width=width, **border),
            A.RandomCrop(height=height, width=width),
        ]
        if colour:
            # brightness/contrast is nearly free; the HSV round trip costs ~2 ms a sample, so
            # hue/saturation jitter runs on a third of the samples only
            steps.append(A.RandomBrightnessContrast(0.3, 0.3, p=0.8))
            steps.append(A.HueSaturationValue(5, 25, 0, p=0.3))
        self.pipeline = A.Compose(
            steps,
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            seed=seed,
        )

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, ignore_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H0, W0, 3) uint8, (P, K, 3), (H0, W0) -> the same at the input size."""
        self._reseed_in_worker()
        people, joints = keypoints.shape[:2]
        out = self.pipeline(
            image=image, mask=ignore_mask, keypoints=keypoints.reshape(-1, 3).astype(np.float32)
        )
        points = np.asarray(out["keypoints"], np.float32).reshape(people, joints, 3)
        image, mask = out["image"], out["mask"]
        points = clean_visibility(points, self.input_size[0], self.input_size[1])
        if self.rng.random() < self.flip_probability:
            image, points, mask = flip_horizontal(image, points, mask, self.flip_permutation)
        return image, points, mask

    def _reseed_in_worker(self) -> None:
        """Give every DataLoader worker its own random stream (albumentations 2.0.8 does not):
        otherwise all workers would draw the same crops and flips."""
        info = torch.utils.data.get_worker_info()
        if info is None:
            return
        key = (os.getpid(), info.id)
        if key != self._seeded_for:
            self._seeded_for = key
            seed = int(info.seed % 2**32)  # differs per worker and per epoch
            self.rng = np.random.default_rng(seed)
            self.pipeline.set_random_seed(seed)


class EvalResize:
    """Deterministic letterbox: scale to fit `input_size` (W, H), pad bottom/right.

    Returns the 2x3 matrix taking original pixels to input pixels, which the codec inverts to
    report keypoints in original image pixels.
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def matrix(self, width: int, height: int) -> np.ndarray:
        scale = min(self.input_size[0] / width, self.input_size[1] / height)
        # cv2.resize maps pixel centres as x' = (x + 0.5) * s - 0.5
        offset = 0.5 * scale - 0.5
        return np.array([[scale, 0.0, offset], [0.0, scale, offset]], np.float32)

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, ignore_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        matrix = self.matrix(width, height)
        scale = float(matrix[0, 0])
        new_w = min(self.input_size[0], max(1, round(width * scale)))
        new_h = min(self.input_size[1], max(1, round(height * scale)))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        canvas = np.empty((self.input_size[1], self.input_size[0], 3), np.uint8)
        canvas[:] = PAD_VALUE
        canvas[:new_h, :new_w] = resized
        mask = np.zeros(canvas.shape[:2], np.uint8)
        mask[:new_h, :new_w] = cv2.resize(
            ignore_mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST
        )
        points = keypoints.astype(np.float32).copy()
        points[..., :2] = points[..., :2] * scale + offset_of(matrix)
        points = clean_visibility(points, *self.input_size)
        return canvas, points, mask, matrix


def offset_of(matrix: np.ndarray) -> np.ndarray:
    """The translation (2,) of a 2x3 affine matrix."""
    return matrix[:, 2]
