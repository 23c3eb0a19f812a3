"""Decoding helpers of the 2D pose codec: peak finding with sub-pixel refinement, output format.

All vectorised over every keypoint channel at once; no per-pixel Python.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Peaks(NamedTuple):
    """M heatmap peaks: kind (M,) keypoint type, xy (M, 2) map coordinates (cells), score (M,)."""

    kind: np.ndarray
    xy: np.ndarray
    score: np.ndarray


def to_numpy(array) -> np.ndarray:
    """A torch tensor (any device/dtype) or array-like -> float32 numpy array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float32).numpy()
    return np.asarray(array, dtype=np.float32)


def find_peaks(heatmaps: np.ndarray, threshold: float, max_per_kind: int | None = None) -> Peaks:
    """(K, h, w) heatmaps -> local maxima above `threshold`, refined to sub-cell precision.

    At most `max_per_kind` peaks (the highest) are kept per keypoint type: noisy maps from an
    untrained or weak network otherwise yield thousands of peaks and make grouping crawl.

    A cell is a peak if it is >= its 8 neighbours and strictly > the 4 neighbours that come
    before it in raster order, so a plateau of equal values yields exactly one peak. The offset
    is the vertex of a parabola through the log values of the cell and its two neighbours along
    each axis: exact for a Gaussian, which is what the heatmaps are trained to be.
    """
    k, h, w = heatmaps.shape
    padded = np.full((k, h + 2, w + 2), -np.inf, np.float32)
    padded[:, 1:-1, 1:-1] = heatmaps
    centre = heatmaps
    is_peak = centre > threshold
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            neighbour = padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            before = dy < 0 or (dy == 0 and dx < 0)
            is_peak &= (centre > neighbour) if before else (centre >= neighbour)
    kind, row, col = np.nonzero(is_peak)
    score = centre[kind, row, col]
    if max_per_kind is not None and len(kind) > max_per_kind:
        kind, row, col, score = _top_per_kind(kind, row, col, score, max_per_kind)
    offset_x = _parabola_offset(padded, kind, row + 1, col + 1, 0, 1)
    offset_y = _parabola_offset(padded, kind, row + 1, col + 1, 1, 0)
    xy = np.stack([col + offset_x, row + offset_y], axis=1).astype(np.float32)
    return Peaks(kind.astype(np.int64), xy, score.astype(np.float32))


def _top_per_kind(kind, row, col, score, limit: int) -> tuple[np.ndarray, ...]:
    """Keep the `limit` highest-scoring peaks of each kind, in (kind, descending score) order."""
    order = np.lexsort((-score, kind))
    kind, row, col, score = kind[order], row[order], col[order], score[order]
    first_of_kind = np.searchsorted(kind, kind, side="left")
    keep = np.arange(len(kind)) - first_of_kind < limit
    return kind[keep], row[keep], col[keep], score[keep]


def _parabola_offset(padded, kind, row, col, dy: int, dx: int) -> np.ndarray:
    """Sub-cell offset along one axis from the log values at -1, 0, +1 (0 at map borders)."""
    left = padded[kind, row - dy, col - dx]
    right = padded[kind, row + dy, col + dx]
    middle = padded[kind, row, col]
    inside = np.isfinite(left) & np.isfinite(right)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_l = np.log(np.maximum(left, 1e-6))
        log_r = np.log(np.maximum(right, 1e-6))
        log_m = np.log(np.maximum(middle, 1e-6))
        curvature = log_l - 2 * log_m + log_r
        offset = 0.5 * (log_l - log_r) / curvature
    good = inside & (curvature < -1e-6) & np.isfinite(offset)
    return np.where(good, np.clip(offset, -0.5, 0.5), 0.0)


def person_scores(keypoint_scores: np.ndarray, fraction: float) -> np.ndarray:
    """(P, M) keypoint scores (0 where missing) -> (P,): each person's mean over its best
    round(fraction x M) keypoints (at least one). Both 2D decoders rank people this way: hidden
    and out-of-frame keypoints score low (or are missing) however well a person is found, so
    the mean of all keypoints ranks partly hidden people below worse whole ones
    (docs/pose2d.md, "The person score")."""
    count = max(1, round(fraction * keypoint_scores.shape[1]))
    best = -np.sort(-keypoint_scores, axis=1)[:, :count]
    return best.mean(1).astype(np.float32)


def check_score_fraction(fraction: float) -> None:
    """A ValueError naming the setting unless 0 < fraction <= 1."""
    if not 0 < fraction <= 1:
        raise ValueError(
            f"codec: score_fraction {fraction} is outside (0, 1]: it is the share of a "
            "person's keypoints that scores it"
        )


def people_to_annotation(
    people: np.ndarray,
    annotation_from_model: tuple[int, ...],
    min_keypoints: int,
    score_fraction: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """(P, M, 3) model-order (x, y, score) with score 0 where missing -> the annotation order.

    annotation_from_model: for each annotated keypoint its model index (the skeleton's
    `annotation_from_model`; derived points such as the neck are dropped). Keeps people with >=
    min_keypoints annotated keypoints; score = `person_scores` of the annotated keypoints,
    missing ones 0 (OpenPose's ranking, mean x (n - 1), scored 0.204 / 0.195 against 0.219 /
    0.216 on held-out images; docs/pose2d.md).
    Returns keypoints (P', K, 3) float32 and scores (P',) float32.
    """
    if len(people) == 0:
        empty = np.zeros((0, len(annotation_from_model), 3), np.float32)
        return empty, np.zeros((0,), np.float32)
    annotated = people[:, list(annotation_from_model)].astype(np.float32)
    found = annotated[..., 2] > 0
    annotated = annotated[found.sum(1) >= min_keypoints]
    return annotated, person_scores(annotated[..., 2], score_fraction)
