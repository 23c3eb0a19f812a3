"""Static-shape torch peak finding and limb scoring: the numpy decoder's rules, graph-capturable.

`find_peaks_torch` and `score_limbs_torch` mirror `peaks.find_peaks` and `grouping.score_pairs`
with fixed output shapes (N, K, top_k, ...): no `.item()`, no `nonzero`, no shape that depends on
the data, so both can run inside a captured CUDA graph. They run on the CPU too, where the tests
check them against the numpy functions. `to_peaks` turns one image's slots into the numpy
decoder's `Peaks`, in the same order, so `group_people` consumes them unchanged.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .peaks import Peaks

# (dy, dx) of the 4 neighbours before a cell in raster order: the cell must beat them strictly.
_BEFORE = ((-1, -1), (-1, 0), (-1, 1), (0, -1))


def find_peaks_torch(
    heatmaps: Tensor, threshold: float, top_k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(N, K, h, w) heatmaps -> the `top_k` highest peaks of each map, sub-cell refined.

    Returns score (N, K, top_k) float32, xy (N, K, top_k, 2) float32 map coordinates (x = column,
    y = row, cells) and valid (N, K, top_k) bool; invalid slots hold 0. The peaks are exactly
    those of `find_peaks(heatmaps[n], threshold, max_per_kind=top_k)`, in its order:
    - an image whose peaks (all kinds together) number more than top_k: by descending score
      within each kind, ties by raster order (find_peaks' `_top_per_kind`, a stable sort);
    - an image with at most top_k peaks in all: raster order within each kind (find_peaks skips
      the cap and keeps `np.nonzero`'s order).
    Valid slots come first in each (n, k) row. Inputs of any float dtype are decoded in float32
    (as `to_numpy` does for the numpy decoder; bfloat16 -> float32 is exact).
    """
    maps = heatmaps.to(torch.float32)
    width = maps.shape[-1]
    padded = F.pad(maps, (1, 1, 1, 1), value=float("-inf"))
    is_peak = peak_mask(maps, padded, threshold)
    cell, valid = _top_cells(maps, is_peak, top_k)
    cell, valid = _numpy_order(cell, valid, is_peak.flatten(1).sum(1), top_k)
    score = maps.flatten(2).gather(2, cell)
    xy = _refine(padded, cell, width)
    score = torch.where(valid, score, torch.zeros_like(score))
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    return score, xy, valid


def peak_mask(maps: Tensor, padded: Tensor, threshold: float) -> Tensor:
    """(N, K, h, w) float32 maps and the same padded by one -inf cell -> (N, K, h, w) bool peaks.

    A peak is above `threshold`, >= its 8 neighbours (one 3x3 max-pool, which pads with -inf
    itself) and strictly > the 4 neighbours before it in raster order, so a plateau of equal
    values keeps exactly its first cell, as find_peaks does.
    """
    _, _, h, w = maps.shape
    not_below = maps >= F.max_pool2d(maps, 3, stride=1, padding=1)
    before = torch.stack(
        [padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _BEFORE]
    ).amax(0)
    return (maps > threshold) & not_below & (maps > before)


def _top_cells(maps: Tensor, is_peak: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """Peak mask (N, K, h, w) -> flat cell index (N, K, top_k) int64 and valid (N, K, top_k).

    One topk over an int64 key per cell: the score's order-preserving integer image in the high
    32 bits, the reversed cell index in the low 32. So equal scores are ranked by raster order,
    exactly like find_peaks' stable sort; a float topk leaves the order of ties unspecified, and
    which of two tied peaks survives the cap would then differ from numpy.
    """
    count = maps.shape[-2] * maps.shape[-1]
    flat = maps.flatten(2) + 0.0  # -0.0 + 0.0 = +0.0: both zeros get one key, as they compare equal
    bits = flat.view(torch.int32).to(torch.int64)
    # IEEE floats order like sign-magnitude integers: flip the magnitude bits of negatives
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    index = torch.arange(count, device=maps.device)
    key = ordered * (1 << 32) + (count - 1 - index)
    key = torch.where(is_peak.flatten(2), key, torch.full_like(key, torch.iinfo(torch.int64).min))
    taken = min(top_k, count)
    _, cell = key.topk(taken, dim=2, largest=True, sorted=True)
    valid = is_peak.flatten(2).gather(2, cell)
    if taken < top_k:  # a map smaller than top_k cells: pad with invalid slots
        pad = top_k - taken
        cell = F.pad(cell, (0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    return cell, valid


def _numpy_order(cell: Tensor, valid: Tensor, total: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """Score-ordered slots (N, K, top_k) -> find_peaks' order: raster order in images with at most
    top_k peaks over all kinds (`total` (N,), before any cap), else unchanged.

    The test is on the uncapped count, as find_peaks' `len(kind) > max_per_kind` is: the kept
    slots alone cannot tell a kind with exactly top_k peaks from one that lost some. Computed for
    every image and selected with `where`: static shapes, no host sync.
    """
    fits = (total <= top_k)[:, None, None]
    slot = torch.arange(top_k, device=cell.device)
    # invalid slots sort after every real cell index and keep their relative order
    raster_key = torch.where(valid, cell, slot + (1 << 40))  # a scalar: no host-to-device copy
    _, order = raster_key.sort(dim=2)
    return (
        torch.where(fits, cell.gather(2, order), cell),
        torch.where(fits, valid.gather(2, order), valid),
    )


def _refine(padded: Tensor, cell: Tensor, width: int) -> Tensor:
    """Padded maps (N, K, h + 2, w + 2), flat cells (N, K, T) -> xy (N, K, T, 2) sub-cell coords."""
    row, col = cell // width, cell % width
    flat = padded.flatten(2)
    stride = width + 2

    def value(dy: int, dx: int) -> Tensor:
        return flat.gather(2, (row + 1 + dy) * stride + (col + 1 + dx))

    middle = value(0, 0)
    offset_x = _parabola_offset(value(0, -1), middle, value(0, 1))
    offset_y = _parabola_offset(value(-1, 0), middle, value(1, 0))
    # float32 sums of an integer and a float32 offset round like numpy's float64 sum cast down
    return torch.stack([col.to(torch.float32) + offset_x, row.to(torch.float32) + offset_y], -1)


def _parabola_offset(left: Tensor, middle: Tensor, right: Tensor) -> Tensor:
    """Sub-cell offset along one axis from the values at -1, 0, +1 (all (N, K, T)).

    The vertex of the parabola through the logs, clipped to +-0.5; 0 at map borders (a -inf
    neighbour from the padding) and where the logs are not concave. The same float32 operations,
    in the same order, as `peaks._parabola_offset`.
    """
    inside = torch.isfinite(left) & torch.isfinite(right)
    log_l = torch.log(left.clamp_min(1e-6))
    log_r = torch.log(right.clamp_min(1e-6))
    log_m = torch.log(middle.clamp_min(1e-6))
    curvature = log_l - 2 * log_m + log_r
    offset = 0.5 * (log_l - log_r) / curvature
    good = inside & (curvature < -1e-6) & torch.isfinite(offset)
    return torch.where(good, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))


def to_peaks(score: Tensor, xy: Tensor, valid: Tensor, n: int) -> Peaks:
    """Image `n` of find_peaks_torch's (N, K, T) results -> `Peaks` (numpy, on the host)."""
    return slot_peaks(
        score[n].detach().to("cpu", torch.float32).numpy(),
        xy[n].detach().to("cpu", torch.float32).numpy(),
        valid[n].detach().cpu().numpy(),
    )


def slot_peaks(score: np.ndarray, xy: np.ndarray, valid: np.ndarray) -> Peaks:
    """One image's (K, T) peak slots -> `Peaks`: kinds ascending, each kind's valid slots in slot
    order, which find_peaks_torch already put in find_peaks' order; so the result equals
    find_peaks(..., max_per_kind=T) element for element (peak i here is its peak i)."""
    valid = np.asarray(valid, bool)
    kind = np.broadcast_to(np.arange(valid.shape[0])[:, None], valid.shape)[valid]
    return Peaks(
        kind.astype(np.int64),
        np.asarray(xy, np.float32)[valid],
        np.asarray(score, np.float32)[valid],
    )


def score_limbs_torch(
    xy: Tensor,
    valid: Tensor,
    pafs: Tensor,
    limbs: tuple[tuple[int, int], ...],
    samples: int,
    min_score: float,
    min_length: float = 1e-3,
) -> tuple[Tensor, Tensor, Tensor]:
    """Score every (start slot, end slot) pair of every limb on the PAFs, at fixed shapes.

    xy (N, K, T, 2), valid (N, K, T) from find_peaks_torch; pafs (N, 2L, h, w); limbs: L
    (from kind, to kind). Returns score (N, L, T, T) float32, count (N, L, T, T) int64 (samples
    whose dot exceeds min_score: `grouping.score_pairs`' ratio times `samples`) and valid
    (N, L, T, T) bool (both slots valid), entry [n, l, i, j] for slot i of the limb's start kind and
    slot j of its end kind, computed as `grouping.score_pairs` computes them (samples rounded to
    cells, dot with the direction, the field's norm for candidates under `min_length` cells).

    The count, not a ratio, leaves the device: CUDA divides by a Python number as a product with
    its reciprocal, so count / samples there is 3 * 0.1 = 0.30000000000000004, not numpy's 0.3,
    and the acceptance test `ratio > min_ratio` flipped for every pair exactly at the threshold
    (seen on an H200). `min_accepted_count` makes that test exact in integers.
    """
    pafs = pafs.to(torch.float32)
    n, _, h, w = pafs.shape
    start_kind = device_constant(tuple(a for a, _ in limbs), xy.device)
    end_kind = device_constant(tuple(b for _, b in limbs), xy.device)
    start = xy[:, start_kind][:, :, :, None, :]  # (N, L, T, 1, 2)
    end = xy[:, end_kind][:, :, None, :, :]  # (N, L, 1, T, 2)
    pair_valid = valid[:, start_kind][..., :, None] & valid[:, end_kind][..., None, :]
    vec = end - start  # (N, L, T, T, 2)
    length = torch.sqrt((vec**2).sum(-1))
    unit = vec / length.clamp_min(1e-6)[..., None]
    points = start[..., None, :] + _steps(samples, xy.device)[:, None] * vec[..., None, :]
    cols = torch.round(points[..., 0]).to(torch.int64).clamp(0, w - 1)  # half to even, as rint
    rows = torch.round(points[..., 1]).to(torch.int64).clamp(0, h - 1)
    field_x, field_y = _read_field(pafs, rows * w + cols, len(limbs))  # (N, L, T, T, S)
    dot = field_x * unit[..., 0, None] + field_y * unit[..., 1, None]
    coincident = (length < min_length)[..., None]
    dot = torch.where(coincident, torch.hypot(field_x, field_y), dot)
    good = dot > min_score
    count = good.sum(-1)
    score = (dot * good).sum(-1) / count.clamp_min(1)
    return score, count, pair_valid


def min_accepted_count(samples: int, min_ratio: float) -> int:
    """The fewest good samples with count / samples > min_ratio, in numpy's float64 arithmetic
    (`grouping.score_pairs`' acceptance): 9 for 10 samples and 0.8, since 8 / 10 > 0.8 is false.
    samples + 1 (nothing accepted) when even every sample is not enough."""
    return next((c for c in range(samples + 1) if c / samples > min_ratio), samples + 1)


@functools.lru_cache(maxsize=64)
def device_constant(values: tuple[int, ...], device: torch.device) -> Tensor:
    """An int64 tensor of `values` on `device`, made once: a tensor built from Python data is a
    host-to-device copy, which a CUDA graph capture forbids; the warm-up before the capture
    makes it, the capture reuses it."""
    return torch.tensor(values, dtype=torch.int64, device=device)


@functools.lru_cache(maxsize=64)
def _steps(samples: int, device: torch.device) -> Tensor:
    """(S,) float32 fractions 0..1, rounded like np.linspace(0, 1, S, dtype=float32) (float64
    products, the last set to 1, then cast), so the sample points round to the same cells.
    Cached like `device_constant` (the result is only read)."""
    steps = torch.arange(samples, dtype=torch.float64, device=device) * (1.0 / max(samples - 1, 1))
    if samples > 1:
        steps[-1] = 1.0
    return steps.to(torch.float32)


def _read_field(pafs: Tensor, flat_cell: Tensor, num_limbs: int) -> tuple[Tensor, Tensor]:
    """pafs (N, 2L, h, w), flat cells (N, L, ...) -> the limb's x and y field there (N, L, ...)."""
    n = pafs.shape[0]
    field = pafs.reshape(n, num_limbs, 2, -1)
    index = flat_cell.reshape(n, num_limbs, -1)
    field_x = field[:, :, 0].gather(2, index).reshape(flat_cell.shape)
    field_y = field[:, :, 1].gather(2, index).reshape(flat_cell.shape)
    return field_x, field_y
