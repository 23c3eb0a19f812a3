"""Bottom-up grouping: score candidate limbs on the PAFs, match greedily, assemble people.

The limb scoring is vectorised over all candidate pairs of all limbs at once (numpy); the
Python loop runs over accepted connections only (about one per person and limb), so the cost
grows with the number of people, not with the map size.
"""

from __future__ import annotations

import numpy as np

from .peaks import Peaks


def candidate_pairs(
    peaks: Peaks, limbs: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (kind-a peak, kind-b peak) pair of every limb: (limb, start, end) indices (C,)."""
    num_kinds = int(max(max(pair) for pair in limbs)) + 1
    by_kind = [np.flatnonzero(peaks.kind == k) for k in range(num_kinds)]
    limb_ids, starts, ends = [], [], []
    for limb, (a, b) in enumerate(limbs):
        ids_a, ids_b = by_kind[a], by_kind[b]
        if len(ids_a) and len(ids_b):
            starts.append(np.repeat(ids_a, len(ids_b)))
            ends.append(np.tile(ids_b, len(ids_a)))
            limb_ids.append(np.full(len(ids_a) * len(ids_b), limb))
    if not limb_ids:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return np.concatenate(limb_ids), np.concatenate(starts), np.concatenate(ends)


def score_pairs(
    start: np.ndarray,
    end: np.ndarray,
    limb: np.ndarray,
    pafs: np.ndarray,
    samples: int,
    min_score: float,
    min_length: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Score C candidate limbs at once on their PAFs.

    start, end: (C, 2) map coordinates; limb: (C,) limb index; pafs: (2L, h, w). The field is
    read at `samples` points along each segment (rounded to cells) and dotted with the segment's
    direction. Returns score (C,) = mean of the dot products above min_score and ratio (C,) = the
    fraction of samples above min_score. Candidates shorter than `min_length` cells use the
    field's norm instead: their direction is not known (coincident endpoints), or, under a cell,
    is set by the peaks' sub-cell offsets rather than by the limb (peaks clamped to a map border
    turn a short vertical limb horizontal).
    """
    _, h, w = pafs.shape
    vec = end - start  # (C, 2)
    length = np.sqrt((vec**2).sum(1))
    unit = vec / np.maximum(length, 1e-6)[:, None]
    steps = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    points = start[:, None, :] + steps[None, :, None] * vec[:, None, :]  # (C, S, 2)
    cols = np.clip(np.rint(points[..., 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.rint(points[..., 1]).astype(np.int64), 0, h - 1)
    channel = 2 * limb[:, None]
    field_x, field_y = pafs[channel, rows, cols], pafs[channel + 1, rows, cols]  # (C, S)
    dot = field_x * unit[:, 0, None] + field_y * unit[:, 1, None]
    coincident = length < min_length
    if coincident.any():
        dot[coincident] = np.hypot(field_x, field_y)[coincident]
    good = dot > min_score
    count = good.sum(1)
    score = (dot * good).sum(1) / np.maximum(count, 1)
    return score, count / samples


def group_people(
    peaks: Peaks,
    pafs: np.ndarray,
    limbs: tuple[tuple[int, int], ...],
    samples: int = 10,
    min_score: float = 0.05,
    min_ratio: float = 0.8,
    min_length: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks + PAFs (2L, h, w) -> people (P, K, 3) of (x, y, peak score), score 0 where missing,
    and each person's summed limb score (P,).

    All candidate pairs of all limbs are scored in one batch. Then, limb by limb in the given
    order (a walk from the neck), accepted pairs are taken by decreasing score, each peak at most
    once per limb (greedy one-to-one matching). A connection joins the person of its assigned end,
    starts a new person when neither end is assigned, and merges two people when it links them
    and they share no keypoint type.
    """
    limb, start, end = candidate_pairs(peaks, limbs)
    score = np.zeros(0, np.float32)
    if len(limb):
        score, ratio = score_pairs(
            peaks.xy[start], peaks.xy[end], limb, pafs, samples, min_score, min_length
        )
        keep = (ratio > min_ratio) & (score > 0)
        limb, start, end, score = limb[keep], start[keep], end[keep], score[keep]
    return connect_people(peaks, limbs, limb, start, end, score)


def connect_people(
    peaks: Peaks,
    limbs: tuple[tuple[int, int], ...],
    limb: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    score: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Accepted candidate limbs (C,) each: limb index, start and end peak, score, in
    `candidate_pairs`' order -> `group_people`'s (people (P, K, 3), scores (P,)).

    The matching half of `group_people`, shared with the decoder of limbs scored on the device
    (`heads.pose2d.slots`), so both assemble people by one rule.
    """
    num_kinds = int(max(max(pair) for pair in limbs)) + 1
    people = _People(len(peaks.kind), num_kinds)
    # limb order first, then best score first (stable, so ties keep peak order)
    order = np.lexsort((-score, limb)).tolist()
    # Python lists and ints below: the loop runs per candidate, where indexing numpy arrays and
    # numpy scalars cost more than the arithmetic (docs/benchmarks.md, "Host assembly")
    limb_list, start_list, end_list = limb.tolist(), start.tolist(), end.tolist()
    score_list = score.astype(np.float64).tolist()
    used: set[tuple[int, int]] = set()  # (limb, peak) already matched
    for c in order:
        index, a, b = limb_list[c], start_list[c], end_list[c]
        if (index, a) in used or (index, b) in used:
            continue
        used.update(((index, a), (index, b)))
        kind_a, kind_b = limbs[index]
        people.connect(a, b, kind_a, kind_b, score_list[c])
    return _assemble(peaks, people.members, people.limb_scores, num_kinds)


class _People:
    """People under construction: person -> (K,) peak index list, peak -> person owner."""

    def __init__(self, num_peaks: int, num_kinds: int) -> None:
        self.owner = [-1] * num_peaks
        self.members: list[list[int]] = []
        self.limb_scores: list[float] = []
        self.num_kinds = num_kinds

    def connect(self, peak_a: int, peak_b: int, kind_a: int, kind_b: int, value: float) -> None:
        """Add one accepted connection (see group_people)."""
        person_a, person_b = self.owner[peak_a], self.owner[peak_b]
        if person_a < 0 and person_b < 0:
            entry = [-1] * self.num_kinds
            entry[kind_a], entry[kind_b] = peak_a, peak_b
            self.owner[peak_a] = self.owner[peak_b] = len(self.members)
            self.members.append(entry)
            self.limb_scores.append(value)
        elif person_b < 0:
            self._add(person_a, peak_b, kind_b, value)
        elif person_a < 0:
            self._add(person_b, peak_a, kind_a, value)
        elif person_a != person_b:
            self._merge(person_a, person_b, value)

    def _add(self, person: int, peak: int, kind: int, value: float) -> None:
        # a person already holding this keypoint type keeps it: the better-scored link came first
        if self.members[person][kind] < 0:
            self.members[person][kind] = peak
            self.owner[peak] = person
            self.limb_scores[person] += value

    def _merge(self, keep_id: int, gone_id: int, value: float) -> None:
        keep, gone = self.members[keep_id], self.members[gone_id]
        if any(k >= 0 and g >= 0 for k, g in zip(keep, gone)):
            return  # both have some keypoint type: two different people
        for kind, peak in enumerate(gone):
            if peak >= 0:
                keep[kind] = peak
                self.owner[peak] = keep_id
                gone[kind] = -1
        self.limb_scores[keep_id] += self.limb_scores[gone_id] + value
        self.limb_scores[gone_id] = 0.0


def _assemble(peaks: Peaks, members, limb_scores, num_kinds: int) -> tuple[np.ndarray, np.ndarray]:
    """Person -> peak index tables to (P, K, 3) arrays; people emptied by merges are dropped."""
    if not members:
        return np.zeros((0, num_kinds, 3), np.float32), np.zeros((0,), np.float32)
    table = np.array(members, np.int64)  # (P, K)
    alive = (table >= 0).any(1)
    table, scores = table[alive], np.asarray(limb_scores, np.float32)[alive]
    found = table >= 0
    safe = np.where(found, table, 0)
    people = np.concatenate([peaks.xy[safe], peaks.score[safe][..., None]], axis=-1)
    people[~found] = 0
    return people.astype(np.float32), scores
