"""Geometric and colour augmentation for multi-person keypoints.

Every transform takes and returns (image (H, W, 3) uint8 RGB, keypoints (P, K, 3) (x, y, v),
ignore_mask (H, W) uint8) and, for evaluation, the 2x3 matrix from original to input pixels.
Pixel centres are at integer coordinates throughout (as cv2.warpAffine and albumentations do).

The training geometry (scale, rotation, crop/pad, flip) is one affine matrix applied by one
cv2.warpAffine to the image and the mask and by the same matrix to the keypoints, so points and
pixels agree exactly; colour jitter is albumentations 2.0.8. Visibility is recomputed from the
image bounds afterwards; the horizontal flip swaps left/right keypoints with the permutation the
caller passes in (datasets know no skeleton).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

# albumentations asks pypi.org for its latest version on import (up to 2 s when offline, and a
# network call from every training, evaluation and test process) unless this is set; a user's
# own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

# ImageNet mean in RGB 0..255: padding with it becomes 0 after normalisation.
PAD_VALUE = (124, 116, 104)


def clean_visibility(
    keypoints: np.ndarray,
    width: int,
    height: int,
    frame: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Set v = 0 (and x = y = 0) for keypoints outside the image or unlabelled (COCO convention).
    frame (x0, y0, x1, y1): the part of the image that shows picture (the rest is padding), when
    smaller than the image: keypoints in the padding are unlabelled too."""
    out = keypoints.astype(np.float32).copy()
    x, y = out[..., 0], out[..., 1]
    x0, y0, x1, y1 = frame if frame is not None else (0, 0, width, height)
    # pixel k spans [k - 0.5, k + 0.5)
    inside = (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)
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


class WorkerRandom:
    """Owns `self.rng`, reseeded once in each DataLoader worker process (per epoch): a copied
    generator would make every worker draw the same crops and flips. Subclasses call
    `_reseed_in_worker()` first in `__call__`; `_seeded(seed)` reseeds any other random source."""

    _seeded_for: tuple[int, int] | None = None
    rng: np.random.Generator

    def _reseed_in_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return
        key = (os.getpid(), info.id)
        if key != self._seeded_for:
            self._seeded_for = key
            seed = int(info.seed % 2**32)  # differs per worker and per epoch
            self.rng = np.random.default_rng(seed)
            self._seeded(seed)

    def _seeded(self, seed: int) -> None:
        """Hook for random sources other than self.rng."""


class TrainAugment(WorkerRandom):
    """Random scale, rotation, crop/pad to `input_size` (W, H), flip with left/right swap, colour.

    The image is first fitted so its longer side matches the input's, then scaled by a factor in
    `scale` and rotated by up to `rotation` degrees about its centre (the fitted frame is kept:
    what leaves it is cut, what it uncovers is padding), padded to the input size (centred) and
    randomly cropped to it where it is larger. All of this is one affine matrix (`train_matrix`),
    so image and mask are resampled once, straight from the original, by cv2.warpAffine (the
    albumentations chain LongestMaxSize -> Affine -> PadIfNeeded -> RandomCrop it replaces
    resampled twice and copied twice; tests/test_pose2d_pipeline.py compares the two). Colour
    jitter stays with albumentations.
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
        self.scale = (float(scale[0]), float(scale[1]))
        self.rotation = float(rotation)
        self.flip_probability = flip_probability
        self.rng = np.random.default_rng(seed)
        self.colour: A.Compose | None = None
        if colour:
            # brightness/contrast is nearly free; the HSV round trip costs ~2 ms a sample, so
            # hue/saturation jitter runs on a third of the samples only
            steps = [
                A.RandomBrightnessContrast(0.3, 0.3, p=0.8),
                A.HueSaturationValue(5, 25, 0, p=0.3),
            ]
            self.colour = A.Compose(steps, seed=seed)

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, ignore_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H0, W0, 3) uint8, (P, K, 3), (H0, W0) -> the same at the input size."""
        self._reseed_in_worker()
        height, width = image.shape[:2]
        rng = self.rng
        matrix, frame = train_matrix(
            (width, height),
            self.input_size,
            scale=rng.uniform(*self.scale),
            angle=rng.uniform(-self.rotation, self.rotation),
            crop=(rng.random(), rng.random()),
            flip=rng.random() < self.flip_probability,
        )
        image, mask = warp_with_frame(image, ignore_mask, matrix, frame, self.input_size)
        points = keypoints.astype(np.float32).copy()
        points[..., :2] = points[..., :2] @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2]
        if matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0] < 0:  # mirrored
            points = points[:, list(self.flip_permutation)]
        # a point the zoom or rotation carried into the padding bands shows no person there
        points = clean_visibility(points, *self.input_size, frame)
        if self.colour is not None:
            image = self.colour(image=image)["image"]
        return image, points, mask

    def _seeded(self, seed: int) -> None:
        if self.colour is not None:  # albumentations 2.0.8 does not reseed per worker itself
            self.colour.set_random_seed(seed)


def train_matrix(
    image_size: tuple[int, int],
    input_size: tuple[int, int],
    scale: float,
    angle: float,
    crop: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """TrainAugment's geometry for one draw: ((2, 3) original -> input pixels, visible frame).

    image_size / input_size: (W, H); scale: factor after fitting the longer side; angle: degrees
    about the fitted image's centre (pixel centres at integers, as cv2 and albumentations);
    crop: where in [0, 1] the input window sits inside a padded image larger than it, per axis;
    flip: mirror the result (x -> W - 1 - x). The frame (x0, y0, x1, y1) is the part of the
    input that shows the fitted image; the rest is padding.
    """
    width, height = image_size
    out_w, out_h = input_size
    ratio = max(out_w, out_h) / max(width, height)
    fit_w, fit_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    # the resize to the fitted size maps pixel centres as x' = (x + 0.5) * fit_w / width - 0.5
    sx, sy = fit_w / width, fit_h / height
    fit = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    radians = np.deg2rad(angle)
    cos, sin = scale * np.cos(radians), scale * np.sin(radians)
    cx, cy = fit_w / 2 - 0.5, fit_h / 2 - 0.5
    spin = np.array([[cos, sin, cx - cos * cx - sin * cy], [-sin, cos, cy + sin * cx - cos * cy]])
    # pad (centred) up to the input size, then crop the input window out of the padded image
    left = (out_w - fit_w) // 2 if fit_w < out_w else -int(crop[0] * (fit_w - out_w + 1))
    top = (out_h - fit_h) // 2 if fit_h < out_h else -int(crop[1] * (fit_h - out_h + 1))
    matrix = spin @ fit
    matrix[:, 2] += (left, top)
    frame = (max(left, 0), max(top, 0), min(left + fit_w, out_w), min(top + fit_h, out_h))
    if flip:
        matrix = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ matrix
        matrix[0, 2] += out_w - 1
        frame = (out_w - frame[2], frame[1], out_w - frame[0], frame[3])
    return matrix, frame


def warp_with_frame(
    image: np.ndarray,
    ignore_mask: np.ndarray,
    matrix: np.ndarray,
    frame: tuple[int, int, int, int],
    input_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Resample image (bilinear) and mask (nearest) once; outside `frame` is padding."""
    border = cv2.BORDER_CONSTANT
    out = cv2.warpAffine(
        image, matrix, input_size, flags=cv2.INTER_LINEAR, borderMode=border, borderValue=PAD_VALUE
    )
    if ignore_mask.any():
        mask = cv2.warpAffine(
            ignore_mask, matrix, input_size, flags=cv2.INTER_NEAREST, borderMode=border
        )
    else:  # the common case: nothing to ignore, nothing to resample
        mask = np.zeros((input_size[1], input_size[0]), np.uint8)
    x0, y0, x1, y1 = frame
    row = pad_row(input_size[0])
    out[:y0], out[y1:], out[:, :x0], out[:, x1:] = row, row, row[:x0], row[x1:]
    mask[:y0], mask[y1:], mask[:, :x0], mask[:, x1:] = 0, 0, 0, 0
    return out, mask


def pad_row(width: int) -> np.ndarray:
    """(width, 3) uint8 row of PAD_VALUE. Assigning it to image rows copies whole rows, ~50x
    faster than numpy broadcasting the 3-tuple pixel by pixel."""
    row = np.empty((width, 3), np.uint8)
    row[:] = PAD_VALUE
    return row


class EvalResize:
    """Deterministic letterbox: scale to fit `input_size` (W, H), pad bottom/right.

    Returns the 2x3 matrix taking original pixels to input pixels, which the codec inverts to
    report keypoints in original image pixels.
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def input_size_for(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) the network sees for an image of width x height: the fixed input size."""
        return self.input_size

    def matrix(self, width: int, height: int) -> np.ndarray:
        scale = min(self.input_size[0] / width, self.input_size[1] / height)
        # cv2.resize maps pixel centres as x' = (x + 0.5) * s - 0.5
        offset = 0.5 * scale - 0.5
        return np.array([[scale, 0.0, offset], [0.0, scale, offset]], np.float32)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) the image is resized to before the padding: scaled by the matrix's scale, in
        whole pixels, at most the input size."""
        size = self.input_size_for(width, height)
        scale = float(self.matrix(width, height)[0, 0])
        new_w = min(size[0], max(1, round(width * scale)))
        return new_w, min(size[1], max(1, round(height * scale)))

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, ignore_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        matrix = self.matrix(width, height)
        size = self.input_size_for(width, height)
        scale = float(matrix[0, 0])
        new_w, new_h = self.resized_size(width, height)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        canvas = np.empty((size[1], size[0], 3), np.uint8)
        canvas[:] = pad_row(size[0])
        canvas[:new_h, :new_w] = resized
        mask = np.zeros(canvas.shape[:2], np.uint8)
        mask[:new_h, :new_w] = cv2.resize(
            ignore_mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST
        )
        points = keypoints.astype(np.float32).copy()
        points[..., :2] = points[..., :2] * scale + offset_of(matrix)
        points = clean_visibility(points, *size)
        return canvas, points, mask, matrix


class EvalScale(EvalResize):
    """The bottom-up references' evaluation geometry: scale the image, aspect ratio kept, so that
    its shorter side (side="short") or its height (side="height", lightweight OpenPose's 368) is
    `size`, then pad bottom/right only up to a multiple of `divisor`. Each image gets its own
    input size; an image that already has the evaluation size is treated exactly as by
    EvalResize at that size (same pixels, same matrix).
    """

    def __init__(self, size: int, divisor: int = 16, side: str = "short") -> None:
        if side not in ("short", "height"):
            raise ValueError(f"EvalScale: side must be 'short' or 'height', got {side!r}")
        if size < divisor or divisor < 1:
            raise ValueError(f"EvalScale: need size >= divisor >= 1, got {size}, {divisor}")
        self.size, self.divisor, self.side = int(size), int(divisor), side
        super().__init__((self.size, self.size))

    def input_size_for(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) the network sees for an image of width x height: scaled, then padded."""
        scale = self.size / (min(width, height) if self.side == "short" else height)
        return tuple(
            self.divisor * math.ceil(max(1, round(side * scale)) / self.divisor)
            for side in (width, height)
        )

    def matrix(self, width: int, height: int) -> np.ndarray:
        scale = self.size / (min(width, height) if self.side == "short" else height)
        offset = 0.5 * scale - 0.5  # cv2.resize maps pixel centres as x' = (x + 0.5) * s - 0.5
        return np.array([[scale, 0.0, offset], [0.0, scale, offset]], np.float32)


def offset_of(matrix: np.ndarray) -> np.ndarray:
    """The translation (2,) of a 2x3 affine matrix."""
    return matrix[:, 2]
