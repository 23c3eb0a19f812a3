"""The centre + offset codec: people <-> centre/keypoint heatmaps + offset fields.

Conventions are the PAF codec's (`heads.pose2d.codec`): keypoints (P, K, 3) in input pixels in
the skeleton's annotation order, cell (i, j) centred on input pixel (stride * j + (stride - 1)
/ 2, stride * i + (stride - 1) / 2), maps of 2 * ceil(H / 16) x 2 * ceil(W / 16) cells.

- Heatmaps (M + 1, h, w): one Gaussian channel per model keypoint (`sigma`), then the person
  centres (`centre_sigma`). A person's centre is the mean of its labelled keypoints.
- Offsets (2M, h, w): on the cells within `offset_radius` cells of a centre (each cell to its
  nearest centre), channels (2k, 2k + 1) hold keypoint k's position minus the cell's, in cells.
  offset_weight (M, h, w) is 1 / the person's scale (the square root of its keypoint box area,
  in cells, at least 1) where keypoint k is labelled, else 0: errors count relative to the
  person's size, as OKS does (DEKR's weighting).
- Decoding: centre peaks (3x3 maxima, refined to sub-cell precision) -> offsets read
  bilinearly at the refined centre -> keypoints, each optionally snapped to its own heatmap's
  peak within `refine_radius` cells -> keypoint score = its heatmap there, person score = the
  mean of its best `score_fraction` keypoint scores -> pose NMS -> original pixels via
  `transform`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...skeletons import Skeleton, get_skeleton
from ..codec import Pose2DCodec, decode_each, draw_gaussians, invert_points
from ..peaks import check_score_fraction, find_peaks, person_scores, to_numpy

# Every regressed keypoint is a detection; its score is floored here so that it stays apart
# from the output contract's "undetected" (score 0), which a regressing head never reports.
MIN_KEYPOINT_SCORE = 1e-3


@dataclass
class CentreCodec:
    """Encode people into centre/offset targets and decode outputs into people.

    stride / size_divisor: as the PAF codec; sigma: keypoint Gaussians (input pixels);
    centre_sigma: centre Gaussians (input pixels); offset_radius: cells around a centre that
    regress the person's offsets; centre_threshold: minimum centre peak; max_people: most
    centres decoded (the highest); peak_threshold / max_peaks: keypoint heatmap peaks for the
    refinement; refine_radius: cells within which a regressed keypoint moves to its heatmap's
    peak (0: off); score_fraction: the share of a person's keypoints, its best-scored, whose mean
    heatmap score is the person's score; nms_threshold: two people are one when their mean
    keypoint distance is below this x the higher-scored one's scale (0: no NMS); skeleton:
    `heads.skeletons.SKELETONS` name.
    """

    stride: int = 8
    size_divisor: int = 16
    sigma: float = 7.0
    centre_sigma: float = 7.0
    offset_radius: float = 2.0
    centre_threshold: float = 0.1
    max_people: int = 30
    peak_threshold: float = 0.1
    max_peaks: int = 64
    # measured on the 2D quickstart's network (docs/pose2d.md): AP 0.225 at 1 cell, 0.267 at 2,
    # 0.286 at 3, flat beyond; regression places keypoints coarsely, the peaks sub-cell
    refine_radius: float = 3.0
    # A person's score ranks it for AP. Occluded and out-of-frame keypoints score low on
    # heatmaps whatever the person's quality, so the mean over all of them (and the centre
    # score) ranks partly hidden people below worse whole ones. Quickstart networks, 3 seeds,
    # AP on val / on 200 held-out images: centre x mean of all 0.330 / 0.287; mean of the best
    # 60% (11 of COCO-17's 18 model keypoints) 0.361 / 0.315 (docs/pose2d.md, "What was tried
    # on the centre head").
    score_fraction: float = 0.6
    nms_threshold: float = 0.1
    skeleton: str = "coco17"
    grid: Pose2DCodec = field(init=False, repr=False)

    output_keys: ClassVar[tuple[str, ...]] = ("heatmaps", "offsets")
    target_keys: ClassVar[tuple[str, ...]] = ("heatmaps", "offsets", "offset_weight", "mask")

    def __post_init__(self) -> None:
        self.keypoint_skeleton: Skeleton = get_skeleton(self.skeleton)
        # the map geometry (sizes, cell centres, the loss mask) is the PAF codec's, in one place
        self.grid = Pose2DCodec(
            stride=self.stride,
            size_divisor=self.size_divisor,
            sigma=self.sigma,
            skeleton=self.skeleton,
        )
        check_score_fraction(self.score_fraction)
        if self.offset_radius < 1.5:
            raise ValueError(
                f"codec: offset_radius {self.offset_radius} cells is below 1.5: the four cells "
                "a refined centre reads its offsets from would not all hold the person's"
            )

    @property
    def num_keypoints(self) -> int:
        """Keypoint heatmap channels before the centre (the skeleton's model keypoints)."""
        return self.keypoint_skeleton.num_model_keypoints

    def map_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """(W, H) input pixels -> (w, h) map cells."""
        return self.grid.map_size(input_size)

    def cell_centres(self, count: int) -> np.ndarray:
        """(count,) input-pixel coordinate of each cell centre along one axis."""
        return self.grid.cell_centres(count)

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        keypoints: np.ndarray,
        input_size: tuple[int, int],
        ignore_mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """People -> {"heatmaps": (M + 1, h, w), "offsets": (2M, h, w), "offset_weight":
        (M, h, w), "mask": (1, h, w)} float32.

        keypoints: (P, K, 3) annotation order, input pixels; input_size (W, H); ignore_mask
        (H, W) nonzero where the loss ignores the image (as the PAF codec's).
        """
        width, height = self.map_size(input_size)
        skeleton, count = self.keypoint_skeleton, self.num_keypoints
        annotated = np.asarray(keypoints, np.float32).reshape(-1, skeleton.num_keypoints, 3)
        people = skeleton.to_model(annotated)
        heatmaps = np.zeros((count + 1, height, width), np.float32)
        heatmaps[:count] = draw_gaussians(people, width, height, self.sigma, self.stride)
        centres = person_centres(annotated)  # (P, 3), v = 0 for people with no keypoint
        heatmaps[count] = draw_gaussians(
            centres[:, None], width, height, self.centre_sigma, self.stride
        )[0]
        offsets, weight = self._offsets(people, centres, width, height)
        mask = self.grid.loss_mask(ignore_mask, width, height)
        return {"heatmaps": heatmaps, "offsets": offsets, "offset_weight": weight, "mask": mask}

    def _offsets(
        self, people: np.ndarray, centres: np.ndarray, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P, M, 3) model-order people, (P, 3) centres -> offsets (2M, h, w), weights (M, h, w);
        a cell near several centres belongs to the nearest."""
        count = self.num_keypoints
        offsets = np.zeros((count, 2, height, width), np.float32)
        weight = np.zeros((count, height, width), np.float32)
        nearest = np.full((height, width), np.inf, np.float32)
        points = self.to_cells(people[..., :2])
        radius = self.offset_radius
        for person, centre in enumerate(self.to_cells(centres[:, :2])):
            labelled = people[person, :, 2] > 0
            if centres[person, 2] <= 0:
                continue
            low = np.maximum(np.ceil(centre - radius).astype(int), 0)
            high = np.minimum(np.floor(centre + radius).astype(int), [width - 1, height - 1])
            if (high < low).any():
                continue  # the centre lies off the map
            xs, ys = np.arange(low[0], high[0] + 1), np.arange(low[1], high[1] + 1)
            distance = np.hypot(xs[None, :] - centre[0], ys[:, None] - centre[1])
            ours = (distance <= radius) & (distance < nearest[ys[:, None], xs[None, :]])
            row, col = ys[np.nonzero(ours)[0]], xs[np.nonzero(ours)[1]]
            nearest[row, col] = distance[ours]
            cell = np.stack([col, row], 1).astype(np.float32)  # (n, 2)
            offsets[:, :, row, col] = (points[person][:, None] - cell[None]).transpose(0, 2, 1)
            weight[:, row, col] = labelled[:, None] / person_scale(points[person], labelled)
        return offsets.reshape(2 * count, height, width), weight

    def to_cells(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) input pixels -> map coordinates (cells)."""
        return (np.asarray(xy, np.float32) - (self.stride - 1) / 2) / self.stride

    # ------------------------------------------------------------------ decode
    def decode(
        self, heatmaps, offsets, transform: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One image's maps -> (keypoints (P, K, 3) annotation order, scores (P,)), best first.

        heatmaps (M + 1, h, w), offsets (2M, h, w), numpy or torch; keypoints are (x, y, score)
        in ORIGINAL pixels when `transform` (2x3, original -> input pixels) is given, else input
        pixels. Every keypoint is regressed: scores are >= MIN_KEYPOINT_SCORE.
        """
        heatmaps, offsets = to_numpy(heatmaps), to_numpy(offsets)
        self._check_channels(heatmaps, offsets)
        count = self.num_keypoints
        centres = find_peaks(heatmaps[count:], self.centre_threshold, self.max_people)
        if len(centres.score) == 0:
            return np.zeros((0, self.keypoint_skeleton.num_keypoints, 3), np.float32), np.zeros(
                0, np.float32
            )
        shifts = sample_bilinear(offsets, centres.xy[:, None])  # (P, 2M)
        points = centres.xy[:, None] + shifts.reshape(-1, count, 2)  # (P, M, 2) cells
        if self.refine_radius > 0:
            points = self._refine(points, heatmaps[:count])
        keypoint_scores = sample_bilinear(heatmaps[:count], points)  # (P, M)
        keypoint_scores = np.clip(keypoint_scores, MIN_KEYPOINT_SCORE, 1.0)
        scores = person_scores(keypoint_scores, self.score_fraction)
        keep = pose_nms(points, scores, self.nms_threshold)
        people = np.concatenate([points, keypoint_scores[..., None]], -1)[keep]
        keypoints = people[:, list(self.keypoint_skeleton.annotation_from_model)]
        keypoints[..., :2] = self.grid.to_input_pixels(keypoints[..., :2])
        if transform is not None:
            keypoints[..., :2] = invert_points(transform, keypoints[..., :2])
        return keypoints.astype(np.float32), scores[keep].astype(np.float32)

    def _refine(self, points: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
        """(P, M, 2) regressed keypoints -> each moved to the nearest peak of its own heatmap
        within refine_radius cells, where there is one (regression is coarse, peaks sub-cell)."""
        peaks = find_peaks(heatmaps, self.peak_threshold, self.max_peaks)
        refined = points.copy()
        for kind in np.unique(peaks.kind):
            candidates = peaks.xy[peaks.kind == kind]  # (n, 2)
            distance = np.linalg.norm(points[:, kind, None] - candidates[None], axis=-1)
            nearest = distance.argmin(1)
            close = distance[np.arange(len(points)), nearest] <= self.refine_radius
            refined[close, kind] = candidates[nearest[close]]
        return refined

    def _check_channels(self, heatmaps: np.ndarray, offsets: np.ndarray) -> None:
        """ValueError when the maps are not this skeleton's (a model of another skeleton)."""
        count = self.num_keypoints
        if heatmaps.shape[0] != count + 1 or offsets.shape[0] != 2 * count:
            raise ValueError(
                f"decode: {heatmaps.shape[0]} heatmap and {offsets.shape[0]} offset channels, "
                f"but skeleton {self.keypoint_skeleton.name} has {count + 1} and {2 * count}"
            )

    def decode_outputs(
        self, outputs: dict, transform: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One image's {"heatmaps", "offsets"} (other keys ignored) -> `decode`'s people."""
        return self.decode(outputs["heatmaps"], outputs["offsets"], transform)

    def decode_batch(
        self, outputs: dict, transforms: list[np.ndarray] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """{"heatmaps": (N, M + 1, h, w), "offsets": (N, 2M, h, w)} -> per image (keypoints,
        scores)."""
        return decode_each(self, outputs, transforms)


def person_centres(keypoints: np.ndarray) -> np.ndarray:
    """(P, K, 3) -> (P, 3): the mean (x, y) of each person's labelled keypoints, v = 1 (v = 0
    and position 0 for a person with none)."""
    labelled = keypoints[..., 2] > 0
    count = labelled.sum(1)
    mean = (keypoints[..., :2] * labelled[..., None]).sum(1) / np.maximum(count, 1)[:, None]
    return np.concatenate([mean, (count > 0)[:, None]], 1).astype(np.float32)


def person_scale(points: np.ndarray, labelled: np.ndarray) -> float:
    """(M, 2) points (cells), (M,) bool -> sqrt of the labelled points' box area, at least 1."""
    if not labelled.any():
        return 1.0
    extent = points[labelled].max(0) - points[labelled].min(0)
    return max(math.sqrt(float(extent[0] * extent[1])), 1.0)


def sample_bilinear(maps: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(C, h, w) maps, (P, C or 1, 2) map coordinates -> (P, C): channel c read bilinearly at
    xy[:, c] (or at xy[:, 0] for every channel), coordinates clamped to the map."""
    channels, height, width = maps.shape
    xy = np.broadcast_to(xy, (xy.shape[0], channels, 2))
    x = np.clip(xy[..., 0], 0, width - 1)
    y = np.clip(xy[..., 1], 0, height - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    wx, wy = x - x0, y - y0
    c = np.arange(channels)[None]
    top = maps[c, y0, x0] * (1 - wx) + maps[c, y0, x1] * wx
    bottom = maps[c, y1, x0] * (1 - wx) + maps[c, y1, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def pose_nms(points: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """(P, M, 2) poses, (P,) scores -> indices kept, best first: greedily, a pose whose mean
    keypoint distance to a kept better one is below threshold x that one's scale is dropped."""
    order = np.argsort(-scores, kind="stable")
    if threshold <= 0 or len(order) < 2:
        return order
    extent = points.max(1) - points.min(1)  # (P, 2)
    scale = np.sqrt(np.maximum(extent[:, 0] * extent[:, 1], 1.0))
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1).mean(-1)  # (P, P)
    kept: list[int] = []
    for person in order:
        if all(distance[person, k] >= threshold * scale[k] for k in kept):
            kept.append(int(person))
    return np.array(kept, np.int64)
