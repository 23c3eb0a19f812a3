"""Identity tracking and keypoint smoothing for the demo.

Tracking: each frame's people are matched to the live tracks greedily by similarity, best pair
first. Similarity is the COCO object keypoint similarity (OKS) between a detection and the track's
keypoints moved by the track's last velocity, over the keypoints both have; where they share
fewer than MIN_COMMON keypoints it falls back to the IoU of the keypoint boxes. A pair below
`min_similarity` is no match. Unmatched detections start new tracks with fresh ids (ids are never
reused); a track unseen for more than `max_misses` frames ends.

Smoothing: a One-Euro filter per track and keypoint coordinate (Casiez et al., CHI 2012): a
low-pass filter whose cutoff rises with speed, so a still person does not jitter and a moving one
does not lag. A keypoint that disappears restarts its filter when it comes back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from selecsls.heads.skeletons import COCO17_SIGMAS

MIN_COMMON = 2


class OneEuroFilter:
    """Vectorised One-Euro filter over an array of values (e.g. (K, 2) keypoint coordinates).

    min_cutoff (Hz): cutoff at rest (lower = smoother); beta: how fast the cutoff grows with speed
    (in value units per second; higher = less lag); d_cutoff (Hz): cutoff of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.02, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(
                f"one-euro: need min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                f"{min_cutoff}, {d_cutoff}, {beta}"
            )
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.active: np.ndarray | None = None  # (N,) which entries have a state
        self.time: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        """x: (N, ...) values at time t (s); valid: (N,) bool, False entries reset their state
        and pass through unchanged. Returns the filtered (N, ...) values."""
        x = np.asarray(x, np.float64)
        valid = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
        if self.value is None or self.value.shape != x.shape:
            self.value, self.speed = x.copy(), np.zeros_like(x)
            self.active, self.time = valid.copy(), t
            return x.copy()
        dt = t - self.time if self.time is not None and t > self.time else 1.0 / 30.0
        self.time = t
        fresh = valid & ~self.active  # (re)appeared: start from the measurement
        speed = (x - self.value) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        speed = a_d * speed + (1 - a_d) * self.speed
        cutoff = self.min_cutoff + self.beta * np.abs(speed)
        a = self._alpha(cutoff, dt)
        value = a * x + (1 - a) * self.value
        keep = (valid & ~fresh).reshape((-1,) + (1,) * (x.ndim - 1))
        self.value = np.where(keep, value, x)
        self.speed = np.where(keep, speed, 0.0)
        self.active = valid.copy()
        return self.value.copy()


def keypoint_boxes(keypoints: np.ndarray) -> np.ndarray:
    """(P, K, 3) keypoints (score 0 = missing) -> (P, 4) boxes (x0, y0, x1, y1) of the found
    ones; all zeros for a person with none."""
    found = keypoints[..., 2] > 0
    big = np.float32(1e9)
    x, y = keypoints[..., 0], keypoints[..., 1]
    x0 = np.where(found, x, big).min(-1)
    y0 = np.where(found, y, big).min(-1)
    x1 = np.where(found, x, -big).max(-1)
    y1 = np.where(found, y, -big).max(-1)
    boxes = np.stack([x0, y0, x1, y1], -1)
    boxes[~found.any(-1)] = 0
    return boxes


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, 4), (P, 4) boxes -> (T, P) IoU."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def similarity_matrix(
    tracks: np.ndarray, people: np.ndarray, sigmas: np.ndarray = COCO17_SIGMAS
) -> np.ndarray:
    """(T, K, 3) track keypoints, (P, K, 3) detections -> (T, P) similarity in [0, 1]:
    OKS over shared keypoints with the skeleton's (K,) `sigmas` (scale = the track's box
    area), box IoU where too few are shared or the sigmas are another skeleton's."""
    boxes_t, boxes_p = keypoint_boxes(tracks), keypoint_boxes(people)
    iou = box_iou_matrix(boxes_t, boxes_p)
    sigmas = np.asarray(sigmas, np.float64)
    if tracks.shape[1] != len(sigmas):
        return iou
    area = np.clip(boxes_t[:, 2:] - boxes_t[:, :2], 1, None).prod(-1)  # (T,)
    both = (tracks[:, None, :, 2] > 0) & (people[None, :, :, 2] > 0)  # (T, P, K)
    d2 = ((tracks[:, None, :, :2] - people[None, :, :, :2]) ** 2).sum(-1)
    variances = (2 * sigmas) ** 2
    e = d2 / (2 * variances * area[:, None, None])
    common = both.sum(-1)
    oks = (np.exp(-e) * both).sum(-1) / np.maximum(common, 1)
    return np.where(common >= MIN_COMMON, oks, iou)


def greedy_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(T, P) similarity -> one-to-one (track, person) pairs, best first, all >= threshold."""
    pairs = []
    if similarity.size == 0:
        return pairs
    order = np.argsort(-similarity, axis=None, kind="stable")
    used_t, used_p = set(), set()
    for flat in order:
        t, p = divmod(int(flat), similarity.shape[1])
        if similarity[t, p] < threshold:
            break
        if t not in used_t and p not in used_p:
            pairs.append((t, p))
            used_t.add(t)
            used_p.add(p)
    return pairs


@dataclass
class Track:
    """A person followed over frames: last raw and smoothed keypoints (K, 3), box velocity."""

    track_id: int
    raw: np.ndarray
    smooth: np.ndarray
    time: float
    filter: OneEuroFilter
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    misses: int = 0
    hits: int = 1

    def predicted(self, t: float) -> np.ndarray:
        """Raw keypoints moved by the last velocity to time t (constant-velocity guess)."""
        out = self.raw.copy()
        out[:, :2] += self.velocity * (t - self.time)
        return out


class Tracker:
    """Stable ids for the people of consecutive frames, with One-Euro smoothed keypoints.

    update(keypoints (P, K, 3), scores (P,), t) -> one dict per detected person, in detection
    order: {"id", "keypoints" (K, 3) smoothed, "raw" (K, 3), "score", "index" (detection row)}.
    smoothing=False returns the raw keypoints as "keypoints".
    """

    def __init__(
        self,
        min_similarity: float = 0.3,
        max_misses: int = 10,
        smoothing: bool = True,
        min_cutoff: float = 1.0,
        beta: float = 0.02,
        sigmas: np.ndarray = COCO17_SIGMAS,
    ) -> None:
        self.sigmas = np.asarray(sigmas, np.float64)  # the skeleton's OKS sigmas (K,)
        self.min_similarity, self.max_misses = min_similarity, max_misses
        self.smoothing, self.min_cutoff, self.beta = smoothing, min_cutoff, beta
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, keypoints: np.ndarray, scores: np.ndarray, t: float) -> list[dict]:
        keypoints = np.asarray(keypoints, np.float32)
        if keypoints.ndim != 3:  # e.g. an empty (0,) array when nobody was found
            keypoints = keypoints.reshape(len(scores), -1 if len(scores) else len(self.sigmas), 3)
        if self.tracks and len(keypoints):
            predicted = np.stack([track.predicted(t) for track in self.tracks])
            similarity = similarity_matrix(predicted, keypoints, self.sigmas)
            pairs = greedy_match(similarity, self.min_similarity)
        else:
            pairs = []
        matched = {p: self.tracks[t_] for t_, p in pairs}
        for track in self.tracks:
            track.misses += 1
        people = []
        for p in range(len(keypoints)):
            track = matched.get(p) or self._new_track(keypoints[p], t)
            if p in matched:
                self._advance(track, keypoints[p], t)
            track.misses = 0
            people.append({
                "id": track.track_id,
                "keypoints": track.smooth.copy() if self.smoothing else track.raw.copy(),
                "raw": track.raw.copy(),
                "score": float(scores[p]),
                "index": p,
            })  # fmt: skip
        self.tracks = [track for track in self.tracks if track.misses <= self.max_misses]
        return people

    def _new_track(self, keypoints: np.ndarray, t: float) -> Track:
        one_euro = OneEuroFilter(self.min_cutoff, self.beta)
        found = keypoints[:, 2] > 0
        smooth = keypoints.copy()
        smooth[:, :2] = one_euro(keypoints[:, :2], t, found)
        track = Track(self.next_id, keypoints.copy(), smooth, t, one_euro)
        self.next_id += 1
        self.tracks.append(track)
        return track

    def _advance(self, track: Track, keypoints: np.ndarray, t: float) -> None:
        found = keypoints[:, 2] > 0
        both = found & (track.raw[:, 2] > 0)
        dt = t - track.time
        if both.any() and dt > 0:
            shift = (keypoints[both, :2] - track.raw[both, :2]).mean(0)
            track.velocity = shift / dt
        smooth = keypoints.copy()
        smooth[:, :2] = track.filter(keypoints[:, :2], t, found)
        smooth[~found] = 0
        track.raw, track.smooth, track.time = keypoints.copy(), smooth, t
        track.hits += 1
