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

# (dy, dx) of the 4 neighbours before a cell in raster order (the cell must beat them strictly),
# then of the 4 after it (the cell must be at least as high)
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


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

    On a GPU at batch 1 these small ops cost their launches, not their arithmetic, so each step
    is written to launch few kernels (45 at 18 x 40 x 64, against 123 in the first version;
    `tools.bench.kernels`), with the same float32 operations as numpy in the same order.
    """
    # one cast, and NCHW order for the flat reads (the network's outputs are channels_last)
    maps = heatmaps.to(torch.float32, memory_format=torch.contiguous_format)
    width = maps.shape[-1]
    padded = F.pad(maps, (1, 1, 1, 1), value=float("-inf"))
    is_peak = peak_mask(maps, padded, threshold)
    cell, valid = _top_cells(maps.flatten(2), is_peak.flatten(2), top_k, threshold)
    cell = _numpy_order(cell, valid, is_peak.flatten(1).sum(1), top_k)
    score = torch.where(valid, maps.flatten(2).gather(2, cell), 0.0)
    xy = torch.where(valid[..., None], _refine(padded, cell, width), 0.0)
    return score, xy, valid


def peak_mask(maps: Tensor, padded: Tensor, threshold: float) -> Tensor:
    """(N, K, h, w) float32 maps and the same padded by one -inf cell -> (N, K, h, w) bool peaks.

    A peak is above `threshold`, >= the 4 neighbours after it in raster order and strictly > the
    4 before it, so a plateau of equal values keeps exactly its first cell, as find_peaks does
    (which tests >= all 8 neighbours, then > the 4 before). One stack of the 8 shifted views and
    one max give both neighbour maxima; the threshold joins the strict test as a lower bound
    (x > max(b, t) is x > b and x > t, NaN failing both ways).
    """
    _, _, h, w = maps.shape
    shifted = torch.stack(
        [padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _NEIGHBOURS]
    )
    before, after = shifted.unflatten(0, (2, 4)).amax(1)
    return (maps > before.clamp_min(threshold)) & (maps >= after)


def _top_cells(
    flat: Tensor, is_peak: Tensor, top_k: int, threshold: float
) -> tuple[Tensor, Tensor]:
    """Flat maps (N, K, h w) float32 and their peak mask -> flat cell index (N, K, top_k) int64
    and valid (N, K, top_k).

    One topk over an int64 key per cell: the score's order-preserving integer image in the high
    32 bits, the reversed cell index in the low 32. So equal scores are ranked by raster order,
    exactly like find_peaks' stable sort; a float topk leaves the order of ties unspecified, and
    which of two tied peaks survives the cap would then differ from numpy. Non-peaks get the
    lowest key, so valid slots lead every row.
    """
    count = flat.shape[-1]
    # with threshold >= 0 every peak is a positive float, whose bits already order like it;
    # below 0 peaks may be zero or negative, and -0.0 + 0.0 = +0.0 gives both zeros one key
    signed = threshold < 0
    bits = (flat + 0.0 if signed else flat).view(torch.int32).to(torch.int64)
    if signed:  # IEEE floats order like sign-magnitude integers: flip negatives' magnitude bits
        bits = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    reversed_cell = device_range(count, flat.device, descending=True)
    key = torch.add(reversed_cell, bits, alpha=1 << 32)  # integers: exact
    key = torch.where(is_peak, key, torch.iinfo(torch.int64).min)
    taken = min(top_k, count)
    top, cell = key.topk(taken, dim=2, largest=True, sorted=True)
    valid = top > torch.iinfo(torch.int64).min
    if taken < top_k:  # a map smaller than top_k cells: pad with invalid slots
        pad = top_k - taken
        cell = F.pad(cell, (0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    return cell, valid


def _numpy_order(cell: Tensor, valid: Tensor, total: Tensor, top_k: int) -> Tensor:
    """Score-ordered slots (N, K, top_k) -> find_peaks' order: raster order in images with at most
    top_k peaks over all kinds (`total` (N,), before any cap), else unchanged.

    The test is on the uncapped count, as find_peaks' `len(kind) > max_per_kind` is: the kept
    slots alone cannot tell a kind with exactly top_k peaks from one that lost some. Computed for
    every image with one sort (static shapes, no host sync): the key is the cell index where the
    image fits and the slot is valid, else 2^40 + the slot, which keeps the slot where it is. The
    valid flags need no reordering: valid slots lead the row in either order.
    """
    fits = (total <= top_k)[:, None, None]
    keep = device_range(top_k, cell.device, offset=1 << 40)
    _, order = torch.where(fits & valid, cell, keep).sort(dim=2)
    return cell.gather(2, order)


# a peak's 5-cell cross in the padded map, as offsets from its centre cell: x - 1, y - 1, the
# centre, x + 1, y + 1 (dy, dx); left / right of the parabola fits are [0:2] / [3:5]
_CROSS = ((0, -1), (-1, 0), (0, 0), (0, 1), (1, 0))


def _refine(padded: Tensor, cell: Tensor, width: int) -> Tensor:
    """Padded maps (N, K, h + 2, w + 2), flat cells (N, K, T) -> xy (N, K, T, 2) sub-cell coords.

    One gather reads every peak's cross (`_CROSS`), so x and y are refined together.
    """
    n, k, t = cell.shape
    stride = width + 2
    row = cell.div(width, rounding_mode="floor")
    col = torch.sub(cell, row, alpha=width)
    # cell (row, col) is (row + 1) * stride + col + 1 = cell + 2 row + stride + 1 in the padding
    steps = tuple(stride + 1 + dy * stride + dx for dy, dx in _CROSS)
    index = torch.add(cell, row, alpha=2)[..., None] + device_constant(steps, cell.device)
    values = padded.flatten(2).gather(2, index.flatten(2)).view(n, k, t, len(_CROSS))
    offset = _parabola_offsets(values)
    # float32 sums of an integer and a float32 offset round like numpy's float64 sum cast down
    return torch.stack([col, row], -1).to(torch.float32) + offset


def _parabola_offsets(cross: Tensor) -> Tensor:
    """(N, K, T, 5) values of each peak's cross (`_CROSS`) -> (N, K, T, 2) sub-cell x, y offsets.

    Per axis the vertex of the parabola through the logs at -1, 0, +1, clipped to +-0.5; 0 at map
    borders (a -inf neighbour from the padding) and where the logs are not concave. The same
    float32 operations, in the same order, as `peaks._parabola_offset`.
    """
    finite = torch.isfinite(cross)
    inside = finite[..., 0:2] & finite[..., 3:5]
    logs = torch.log(cross.clamp_min(1e-6))
    log_l, log_m, log_r = logs[..., 0:2], logs[..., 2:3], logs[..., 3:5]
    curvature = log_l - 2 * log_m + log_r
    offset = 0.5 * (log_l - log_r) / curvature
    good = inside & (curvature < -1e-6) & torch.isfinite(offset)
    return torch.where(good, offset.clamp(-0.5, 0.5), 0.0)


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
    # one cast, and NCHW order for the flat reads (the network's outputs are channels_last)
    pafs = pafs.to(torch.float32, memory_format=torch.contiguous_format)
    n, _, h, w = pafs.shape
    num_limbs = len(limbs)
    kinds = device_constant(tuple(a for a, _ in limbs) + tuple(b for _, b in limbs), xy.device)
    ends_xy, ends_valid = xy[:, kinds], valid[:, kinds]  # (N, 2L, T, ...): starts, then ends
    start = ends_xy[:, :num_limbs, :, None, :]  # (N, L, T, 1, 2)
    end = ends_xy[:, num_limbs:, None, :, :]  # (N, L, 1, T, 2)
    pair_valid = ends_valid[:, :num_limbs, :, None] & ends_valid[:, num_limbs:, None, :]
    vec = end - start  # (N, L, T, T, 2)
    length = torch.sqrt((vec**2).sum(-1))
    unit = vec / length.clamp_min(1e-6)[..., None]
    points = start[..., None, :] + _steps(samples, xy.device)[:, None] * vec[..., None, :]
    cells = torch.round(points).to(torch.int64)  # (N, L, T, T, S, 2) columns, rows; rint's rule
    low = device_constant((0, 0), xy.device)
    cells = torch.clamp(cells, low, device_constant((w - 1, h - 1), xy.device))
    field = _read_field(pafs, torch.add(cells[..., 0], cells[..., 1], alpha=w), num_limbs)
    # (N, L, 2, T, T, S) field . (N, L, 2, T, T, 1) direction: a sum of the two products
    dot = (field * unit.movedim(-1, 2)[..., None]).sum(2)
    coincident = (length < min_length)[..., None]
    dot = torch.where(coincident, torch.hypot(field[:, :, 0], field[:, :, 1]), dot)
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
def device_range(
    count: int, device: torch.device, descending: bool = False, offset: int = 0
) -> Tensor:
    """offset + 0..count-1 (or count-1..0) as int64 on `device`, made once (see
    `device_constant`)."""
    values = torch.arange(count, dtype=torch.int64, device=device) + offset
    return values.flip(0) if descending else values


@functools.lru_cache(maxsize=64)
def _steps(samples: int, device: torch.device) -> Tensor:
    """(S,) float32 fractions 0..1, rounded like np.linspace(0, 1, S, dtype=float32) (float64
    products, the last set to 1, then cast), so the sample points round to the same cells.
    Cached like `device_constant` (the result is only read)."""
    steps = torch.arange(samples, dtype=torch.float64, device=device) * (1.0 / max(samples - 1, 1))
    if samples > 1:
        steps[-1] = 1.0
    return steps.to(torch.float32)


def _read_field(pafs: Tensor, flat_cell: Tensor, num_limbs: int) -> Tensor:
    """pafs (N, 2L, h, w) contiguous, flat cells (N, L, ...) -> the limb's field there
    (N, L, 2, ...): x and y in one gather."""
    n = pafs.shape[0]
    field = pafs.view(n, num_limbs, 2, -1)
    index = flat_cell.reshape(n, num_limbs, 1, -1).expand(-1, -1, 2, -1)
    return field.gather(3, index).view(n, num_limbs, 2, *flat_cell.shape[2:])
