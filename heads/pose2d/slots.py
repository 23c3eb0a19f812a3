"""The device-side PAF decode's fixed-shape results, as named outputs, and their host half.

On a GPU the peak finding and limb scoring run next to the network, inside one CUDA graph
(`tools/realtime/graph.py`), with static shapes (`peaks_torch`): per image, `top_k` slots per
keypoint kind and `top_k x top_k` slot pairs per limb. `slot_outputs` names those tensors so that
they travel with the network's outputs; `Pose2DCodec.decode_outputs` finds them there and only
does the greedy matching on the host (`decode_slots` here), by the numpy decoder's rules, so the
people equal `Pose2DCodec.decode` of the maps.

Per-image arrays (batch dimension dropped, as the demo's `Inference` holds them):
- "peak_score" (K, T) float32, "peak_xy" (K, T, 2) float32 map cells, "peak_valid" (K, T) bool:
  `find_peaks_torch` of the K keypoint heatmaps;
- "limb_score" (L, T, T) float32 and "limb_accepted" (L, T, T) bool: `score_limbs_torch`'s score
  and its acceptance test (both slots valid, good samples / samples > min_ratio, score > 0),
  computed on the device in integers (`min_accepted_count`), so it is exact on any device.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .grouping import connect_people
from .peaks_torch import find_peaks_torch, min_accepted_count, score_limbs_torch, slot_peaks

SLOT_KEYS = ("peak_score", "peak_xy", "peak_valid", "limb_score", "limb_accepted")


def has_slots(outputs: dict) -> bool:
    """Whether one image's (or a batch's) outputs carry the device-side decode's slots."""
    return all(key in outputs for key in SLOT_KEYS)


def slot_outputs(heatmaps: Tensor, pafs: Tensor, codec) -> dict[str, Tensor]:
    """(N, M + 1, h, w) heatmaps and (N, 2L, h, w) PAFs -> the SLOT_KEYS tensors (N, ...) of a
    `Pose2DCodec` (its threshold, max_peaks as T, PAF sampling and acceptance). Static shapes,
    no host synchronisation: capturable in a CUDA graph."""
    score, xy, valid = find_peaks_torch(
        heatmaps[:, : codec.num_keypoints], codec.peak_threshold, codec.max_peaks
    )
    limb_score, count, pair_valid = score_limbs_torch(
        xy, valid, pafs, codec.limbs, codec.paf_samples, codec.paf_min_score, codec.paf_min_length
    )
    enough = count >= min_accepted_count(codec.paf_samples, codec.paf_min_ratio)
    accepted = pair_valid & enough & (limb_score > 0)
    return {
        "peak_score": score,
        "peak_xy": xy,
        "peak_valid": valid,
        "limb_score": limb_score,
        "limb_accepted": accepted,
    }


def slot_candidates(
    valid: np.ndarray,
    limb_score: np.ndarray,
    accepted: np.ndarray,
    limbs: tuple[tuple[int, int], ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's accepted slot pairs -> (limb, start peak, end peak, score) (C,) each, in
    `grouping.candidate_pairs`' order (limb, then start peak, then end peak), peak indices as
    `slot_peaks` numbers them. valid (K, T); limb_score, accepted (L, T, T)."""
    valid = np.asarray(valid, bool)
    # valid slots come first in every kind's row, so slot s of kind k is peak first[k] + s
    first = np.concatenate([[0], np.cumsum(valid.sum(1))[:-1]])
    # accepted pairs need two valid slots, and valid slots lead their rows: the block of the
    # most valid slots any kind has holds them all (a tenth of the T x T grid or less), and its
    # row-major order is the full grid's, candidate_pairs' order
    width = int(valid.sum(1).max()) if valid.size else 0
    limb, i, j = np.nonzero(np.asarray(accepted, bool)[:, :width, :width])
    start_kind = np.array([a for a, _ in limbs], np.int64)
    end_kind = np.array([b for _, b in limbs], np.int64)
    start = first[start_kind[limb]] + i
    end = first[end_kind[limb]] + j
    score = np.asarray(limb_score, np.float32)[limb, i, j]
    return limb.astype(np.int64), start.astype(np.int64), end.astype(np.int64), score


def decode_slots(
    outputs: dict, limbs: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One image's slot outputs (SLOT_KEYS, numpy or torch, no batch dimension) -> people
    (P, K, 3) in map cells and scores (P,), as `grouping.group_people` gives them."""
    arrays = {key: _numpy(outputs[key]) for key in SLOT_KEYS}
    peaks = slot_peaks(arrays["peak_score"], arrays["peak_xy"], arrays["peak_valid"])
    limb, start, end, score = slot_candidates(
        arrays["peak_valid"], arrays["limb_score"], arrays["limb_accepted"], limbs
    )
    return connect_people(peaks, limbs, limb, start, end, score)


def _numpy(value) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        return value.numpy() if value.dtype == torch.bool else value.float().numpy()
    return np.asarray(value)
