"""The 2D pose codec: people <-> heatmaps + part affinity fields, the geometry in one place.

Conventions (shared by encode, decode and the network's output size):
- Keypoints come in input-image pixels, pixel centres at integer coordinates, in the annotation
  order of the codec's skeleton (`skeleton`, COCO-17 by default): (P, K, 3) with v = 0
  unlabelled, 1 labelled but occluded, 2 visible.
- The maps have `stride` (8) input pixels per cell; cell (i, j) stands for input pixel
  (stride * j + (stride - 1) / 2, stride * i + (stride - 1) / 2), the centre of the block it covers.
- Map size for an input of H x W is ceil(H / size_divisor) * (size_divisor / stride) (same for W):
  the backbone ends at stride 16 and the head doubles that map, so an input not divisible by 16
  gets 2 * ceil(H / 16) rows. Inputs are padded bottom/right; padding holds no people.
- Heatmaps: one channel per keypoint of the skeleton's model order (for COCO: the OpenPose-18
  order) + background (1 - max of the others), 19 for COCO; Gaussians of `sigma` input pixels
  (0 where below GAUSSIAN_CUTOFF), max over people. PAFs: 2 channels per limb (38 for COCO),
  limb i = channels (2i, 2i + 1) = the unit vector from->to on cells within `paf_half_width`
  cells of the limb, averaged over people.
- Decoding maps back to ORIGINAL image pixels through `transform`, the 2x3 affine matrix taking
  original pixels to input pixels (from the resize/pad step), and returns keypoints in the
  annotation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..skeletons import Skeleton, get_skeleton
from .grouping import group_people
from .peaks import check_score_fraction, find_peaks, people_to_annotation, to_numpy
from .slots import decode_slots, has_slots

# Heatmap Gaussians are written where they reach this value (below it they are 0).
GAUSSIAN_CUTOFF = 1e-4


@dataclass
class Pose2DCodec:
    """Encode people into training targets and decode network outputs into people.

    stride: input pixels per map cell; sigma: Gaussian sigma in input pixels; paf_half_width: PAF
    band half-width in cells; size_divisor: the backbone's total stride (fixes the map size);
    peak_threshold: minimum heatmap peak; paf_samples / paf_min_score / paf_min_ratio: limb
    scoring (a candidate limb needs PAF . direction > paf_min_score on > paf_min_ratio of the
    samples; candidates shorter than paf_min_length cells are scored by the field's norm, their
    direction being unknown; 1e-3 = coincident only, 1.0 also recovers limbs whose peaks a map
    border clamped together, measured in docs/pose2d.md and off by default); min_keypoints:
    fewest keypoints a decoded person keeps; max_peaks: most peaks kept
    per keypoint type (the highest), which bounds decoding time on noisy maps; score_fraction:
    the share of a person's keypoints, its best-scored (missing ones 0), whose mean peak score
    is the person's score; skeleton: the registry name of the keypoints encoded and decoded
    (`heads.skeletons.SKELETONS`).
    """

    stride: int = 8
    sigma: float = 7.0
    paf_half_width: float = 1.0
    size_divisor: int = 16
    peak_threshold: float = 0.1
    paf_samples: int = 10
    paf_min_score: float = 0.05
    paf_min_ratio: float = 0.8
    paf_min_length: float = 1e-3
    min_keypoints: int = 3
    max_peaks: int = 64
    # the centre head's person score (peaks.person_scores). On two PAF quickstart networks, AP
    # on 200 held-out images: OpenPose's mean x (n - 1) 0.204 / 0.195, best 60% 0.219 / 0.216
    score_fraction: float = 0.6
    skeleton: str = "coco17"

    # the network outputs decode_outputs reads, and the targets encode writes for the loss
    output_keys: ClassVar[tuple[str, ...]] = ("heatmaps", "pafs")
    target_keys: ClassVar[tuple[str, ...]] = ("heatmaps", "pafs", "mask")

    def __post_init__(self) -> None:
        self.keypoint_skeleton: Skeleton = get_skeleton(self.skeleton)
        check_score_fraction(self.score_fraction)
        if self.size_divisor % self.stride:
            raise ValueError(
                f"codec: size_divisor {self.size_divisor} must be a multiple of "
                f"stride {self.stride}"
            )

    @property
    def num_keypoints(self) -> int:
        """Heatmap channels before the background (the skeleton's model keypoints)."""
        return self.keypoint_skeleton.num_model_keypoints

    @property
    def limbs(self) -> tuple[tuple[int, int], ...]:
        """PAF limbs as (from, to) model-order indices."""
        return self.keypoint_skeleton.limb_indices

    # ------------------------------------------------------------------ geometry
    def map_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """(W, H) input pixels -> (w, h) map cells."""
        factor = self.size_divisor // self.stride
        width, height = input_size
        return (
            math.ceil(width / self.size_divisor) * factor,
            math.ceil(height / self.size_divisor) * factor,
        )

    def cell_centres(self, count: int) -> np.ndarray:
        """(count,) input-pixel coordinate of each cell centre along one axis."""
        return np.arange(count, dtype=np.float32) * self.stride + (self.stride - 1) / 2

    def to_input_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) map coordinates (cells) -> input pixels."""
        return xy * self.stride + (self.stride - 1) / 2

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        keypoints: np.ndarray,
        input_size: tuple[int, int],
        ignore_mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """People -> {"heatmaps": (M + 1, h, w), "pafs": (2L, h, w), "mask": (1, h, w)} float32
        (M model keypoints, L limbs; 19 and 38 channels for COCO).

        keypoints: (P, K, 3) (x, y, v) in the annotation order, input pixels (P may be 0);
        input_size: (W, H); ignore_mask: (H, W), nonzero where the loss must ignore the image
        (crowds, people without keypoints). mask is 0 on cells that are mostly ignored, else 1.
        """
        width, height = self.map_size(input_size)
        skeleton, count = self.keypoint_skeleton, self.num_keypoints
        people = skeleton.to_model(
            np.asarray(keypoints, np.float32).reshape(-1, skeleton.num_keypoints, 3)
        )
        heatmaps = np.zeros((count + 1, height, width), np.float32)
        heatmaps[:count] = self._gaussians(people, width, height)
        heatmaps[count] = 1.0 - heatmaps[:count].max(0)
        pafs = self._pafs(people, width, height)
        mask = self.loss_mask(ignore_mask, width, height)
        return {"heatmaps": heatmaps, "pafs": pafs, "mask": mask}

    def _gaussians(self, people: np.ndarray, width: int, height: int) -> np.ndarray:
        """(P, M, 3) -> (M, h, w): per keypoint the max over people of Gaussians."""
        return draw_gaussians(people, width, height, self.sigma, self.stride)

    def _pafs(self, people: np.ndarray, width: int, height: int) -> np.ndarray:
        """(P, M, 3) -> (2L, h, w): unit limb vectors on a band around each limb, averaged.

        Only limbs with both ends labelled are rasterised, each in a window around its band (one
        batch of (limbs, window) tests), and summed per limb type with bincount.
        """
        num_limbs = len(self.limbs)
        pafs = np.zeros((num_limbs, 2, height * width), np.float32)
        if len(people) == 0:
            return pafs.reshape(-1, height, width)
        limbs = np.array(self.limbs)
        points = (people[..., :2] - (self.stride - 1) / 2) / self.stride  # map cells
        # (limb, person) pairs with both ends labelled and a direction
        valid = (people[:, limbs[:, 0], 2] > 0) & (people[:, limbs[:, 1], 2] > 0)  # (P, L)
        start, end = points[:, limbs[:, 0]][valid], points[:, limbs[:, 1]][valid]  # (n, 2)
        limb = np.nonzero(valid)[1]
        vec = end - start
        length = np.sqrt((vec**2).sum(-1))
        keep = length > 1e-6
        start, vec, length, limb = start[keep], vec[keep], length[keep], limb[keep]
        if len(limb) == 0:
            return pafs.reshape(-1, height, width)
        unit = vec / length[:, None]
        # the band reaches half a width past each end so that samples rounded to cells at the
        # limb's ends still land inside it; its cells lie within reach * sqrt(2) of the segment
        reach = self.paf_half_width
        low = np.floor(np.minimum(start, start + vec) - 1.5 * reach).astype(np.int64)
        high = np.ceil(np.maximum(start, start + vec) + 1.5 * reach).astype(np.int64)
        shape = np.array([width, height])
        low, high = np.clip(low, 0, shape - 1), np.clip(high, 0, shape - 1)
        size = np.minimum((high - low).max(0) + 1, shape)  # one window size for all limbs
        low = np.minimum(low, shape - size)
        xs = (low[:, 0, None] + np.arange(size[0]))[:, None, :]  # (n, 1, wx)
        ys = (low[:, 1, None] + np.arange(size[1]))[:, :, None]  # (n, wy, 1)
        dx = xs.astype(np.float32) - start[:, 0, None, None]
        dy = ys.astype(np.float32) - start[:, 1, None, None]
        ux, uy = unit[:, 0, None, None], unit[:, 1, None, None]
        along = dx * ux + dy * uy
        band = (along >= -reach) & (along <= length[:, None, None] + reach)
        band &= np.abs(dx * uy - dy * ux) <= reach
        which, row, col = np.nonzero(band)
        cell = limb[which] * (height * width) + ys[which, row, 0] * width + xs[which, 0, col]
        total = num_limbs * height * width
        count = np.bincount(cell, minlength=total)
        for axis in range(2):
            summed = np.bincount(cell, weights=unit[which, axis], minlength=total)
            pafs[:, axis] = (summed / np.maximum(count, 1)).reshape(num_limbs, -1)
        return pafs.reshape(-1, height, width)

    def loss_mask(self, ignore_mask: np.ndarray | None, width: int, height: int) -> np.ndarray:
        """(H, W) ignore mask -> (1, h, w) loss weights: 0 where over half a cell is ignored."""
        if ignore_mask is None:
            return np.ones((1, height, width), np.float32)
        ignore = np.asarray(ignore_mask)
        if not ignore.any():  # the common case, and cheap to test
            return np.ones((1, height, width), np.float32)
        padded = np.zeros((height * self.stride, width * self.stride), np.float32)
        rows, cols = min(ignore.shape[0], padded.shape[0]), min(ignore.shape[1], padded.shape[1])
        padded[:rows, :cols] = ignore[:rows, :cols] > 0
        # INTER_AREA at an integer factor is the block mean (exact here: sums of 0/1 over 64)
        fraction = cv2.resize(padded, (width, height), interpolation=cv2.INTER_AREA)
        return (fraction <= 0.5).astype(np.float32)[None]

    # ------------------------------------------------------------------ decode
    def decode(
        self, heatmaps, pafs, transform: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One image's maps -> (keypoints (P, K, 3) in the annotation order, scores (P,)), best
        first.

        heatmaps: (M + 1, h, w) (or (M, h, w)), pafs: (2L, h, w), numpy or torch. keypoints are
        (x, y, keypoint score) in ORIGINAL image pixels when `transform` (2x3 affine, original ->
        input pixels) is given, else in input pixels; undetected keypoints are (0, 0, 0).
        """
        heatmaps, pafs = to_numpy(heatmaps), to_numpy(pafs)
        self._check_channels(heatmaps, pafs)
        peaks = find_peaks(heatmaps[: self.num_keypoints], self.peak_threshold, self.max_peaks)
        people, scores = group_people(peaks, pafs, self.limbs, **self.grouping_options())
        return self._finish(people, scores, transform)

    def _finish(
        self, people: np.ndarray, scores: np.ndarray, transform: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Grouped people (P, K, 3) in map cells -> decode's (keypoints, scores), best first."""
        keypoints, scores = people_to_annotation(
            people,
            self.keypoint_skeleton.annotation_from_model,
            self.min_keypoints,
            self.score_fraction,
        )
        keypoints[..., :2] = self.to_input_pixels(keypoints[..., :2])
        if transform is not None:
            keypoints[..., :2] = invert_points(transform, keypoints[..., :2])
        keypoints[keypoints[..., 2] <= 0] = 0
        order = np.argsort(-scores, kind="stable")
        return keypoints[order], scores[order]

    def decode_outputs(
        self, outputs: dict, transform: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One image's {"heatmaps", "pafs"} (any other keys ignored) -> `decode`'s people: the
        call every 2D codec shares (`heads.pose2d.registry`). Outputs that carry the device-side
        decode's peak and limb slots (`heads.pose2d.slots`, the CUDA graph runner's) are only
        matched on the host; the maps are then not needed."""
        if has_slots(outputs):
            people, scores = decode_slots(outputs, self.limbs)
            return self._finish(people, scores, transform)
        return self.decode(outputs["heatmaps"], outputs["pafs"], transform)

    def grouping_options(self) -> dict:
        """The keyword arguments of `group_people` this codec decodes with."""
        return {
            "samples": self.paf_samples,
            "min_score": self.paf_min_score,
            "min_ratio": self.paf_min_ratio,
            "min_length": self.paf_min_length,
        }

    def _check_channels(self, heatmaps: np.ndarray, pafs: np.ndarray) -> None:
        """ValueError when the maps are not this skeleton's (a model of another skeleton)."""
        skeleton = self.keypoint_skeleton
        if heatmaps.shape[0] not in (skeleton.num_heatmaps, self.num_keypoints) or (
            pafs.shape[0] != skeleton.num_pafs
        ):
            raise ValueError(
                f"decode: {heatmaps.shape[0]} heatmap and {pafs.shape[0]} PAF channels, but "
                f"skeleton {skeleton.name} has {skeleton.num_heatmaps} and {skeleton.num_pafs}"
            )

    def decode_batch(
        self, outputs: dict, transforms: list[np.ndarray] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """{"heatmaps": (N, M + 1, h, w), "pafs": (N, 2L, h, w)} -> per image (keypoints,
        scores)."""
        return decode_each(self, outputs, transforms)


def decode_each(
    codec, outputs: dict, transforms: list[np.ndarray] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A batch of outputs {name: (N, C, h, w)} -> per image `codec.decode_outputs` of its maps
    (the codec's `output_keys`; other outputs are ignored): either 2D codec's `decode_batch`."""
    arrays = {key: to_numpy(outputs[key]) for key in codec.output_keys}
    count = len(arrays[codec.output_keys[0]])
    return [
        codec.decode_outputs(
            {key: value[n] for key, value in arrays.items()},
            None if transforms is None else transforms[n],
        )
        for n in range(count)
    ]


def invert_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply the inverse of a 2x3 affine matrix (original -> input) to (..., 2) input points."""
    matrix = np.vstack([to_numpy(transform).astype(np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12:
        raise ValueError(
            f"decode: transform {matrix[:2].tolist()} cannot be inverted (a randomly augmented "
            "training sample has none; evaluate with EvalResize samples)"
        )
    inverse = np.linalg.inv(matrix)[:2]
    flat = points.reshape(-1, 2).astype(np.float64)
    return (flat @ inverse[:, :2].T + inverse[:, 2]).reshape(points.shape).astype(np.float32)


def draw_gaussians(
    points: np.ndarray, width: int, height: int, sigma: float, stride: int
) -> np.ndarray:
    """(P, M, 3) points (x, y, v) in input pixels -> (M, h, w): per channel the max over people
    of Gaussians of `sigma` input pixels at the labelled (v > 0) points, on `stride`-pixel cells.

    Each Gaussian is written only on the cells where it reaches GAUSSIAN_CUTOFF (a window of
    about 2 x 4.3 sigma); beyond them the full-map product is below the cutoff, so the maps
    differ from an everywhere-evaluated Gaussian by less than that.
    """
    out = np.zeros((points.shape[1], height, width), np.float32)
    person, keypoint = np.nonzero(points[..., 2] > 0)
    if len(person) == 0:
        return out
    scale = -0.5 / sigma**2
    radius = sigma * math.sqrt(-2.0 * math.log(GAUSSIAN_CUTOFF)) / stride  # cells
    size = 2 * math.ceil(radius) + 2
    xy = points[person, keypoint, :2]  # (N, 2) input pixels
    # window origin (cells): the first cell within `radius` of the centre, kept on the map
    first = np.floor((xy - (stride - 1) / 2) / stride - radius).astype(np.int64) + 1
    first = np.clip(first, 0, np.maximum(np.array([width, height]) - size, 0))
    cells = first[:, :, None] + np.arange(size)  # (N, 2, size)
    inside = cells < np.array([width, height])[:, None]
    centres = cells.astype(np.float32) * stride + (stride - 1) / 2
    g = np.exp(scale * (centres - xy[..., None]) ** 2) * inside  # (N, 2, size)
    patches = g[:, 1, :, None] * g[:, 0, None, :]  # (N, size_y, size_x)
    rows = np.minimum(cells[:, 1, :, None], height - 1)
    cols = np.minimum(cells[:, 0, None, :], width - 1)
    np.maximum.at(out, (keypoint[:, None, None], rows, cols), patches)
    return out
