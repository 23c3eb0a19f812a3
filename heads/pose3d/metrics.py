"""3D pose metrics: MPJPE, PA-MPJPE, 3DPCK and its AUC, MuPoTS-style "all" and "matched" people.

Errors are per-joint Euclidean distances in millimetres between root-relative poses (pelvis
subtracted, as MuPoTS-3D evaluates), or after Procrustes alignment (PA). 3DPCK@150mm is the
percentage of joints within 150 mm; its AUC averages the PCK over thresholds 0, 5, ..., 150 mm.
MuPoTS-style evaluation matches each ground-truth person to at most one prediction by 2D proximity
(greedy, closest pairs first); "matched" statistics use the matched people only, "all" ones count
every joint of an unmatched ground-truth person as a miss. Unmatched predictions are ignored.
"""

from __future__ import annotations

import numpy as np

from ..skeletons import JOINTS21_ROOT
from .geometry import procrustes_align

# MuPoTS-3D's 17 evaluated joints are the first 17 of the 21 order; the pelvis is left out of the
# averages because its root-relative error is 0 by construction.
EVAL_JOINTS: tuple[int, ...] = tuple(j for j in range(17) if j != JOINTS21_ROOT)
AUC_THRESHOLDS = np.linspace(0.0, 150.0, 31)


def joint_errors(
    pred: np.ndarray, gt: np.ndarray, align: str = "root", root: int = JOINTS21_ROOT
) -> np.ndarray:
    """(P, J, 3), (P, J, 3) mm -> (P, J) distances. align: "root" (both root-relative),
    "procrustes" (root-relative pred aligned to gt by a similarity, per person) or "none".
    NaN in gt (unlabelled) gives NaN."""
    pred = np.asarray(pred, np.float64).reshape(-1, *np.shape(gt)[-2:])
    gt = np.asarray(gt, np.float64).reshape(pred.shape)
    if align in ("root", "procrustes"):
        pred = pred - pred[:, root : root + 1]
        gt = gt - gt[:, root : root + 1]
    if align == "procrustes":
        aligned = pred.copy()
        for p in range(len(pred)):
            ok = np.isfinite(gt[p]).all(1) & np.isfinite(pred[p]).all(1)
            aligned[p, ok] = procrustes_align(pred[p, ok], gt[p, ok])
        pred = aligned
    elif align not in ("root", "none"):
        raise ValueError(f"joint_errors: align must be root, procrustes or none, got {align!r}")
    return np.linalg.norm(pred - gt, axis=-1)


def pck(errors: np.ndarray, threshold: float = 150.0) -> float:
    """Percentage of joints with error <= threshold; NaN entries (unlabelled) are skipped and
    inf entries (missed) count as failures."""
    errors = np.asarray(errors, np.float64)
    counted = ~np.isnan(errors)
    if not counted.any():
        return float("nan")
    return float(100.0 * (errors[counted] <= threshold).mean())


def auc(errors: np.ndarray, thresholds: np.ndarray = AUC_THRESHOLDS) -> float:
    """Mean of the PCK (%) over the thresholds (default 0..150 mm in 5 mm steps)."""
    return float(np.mean([pck(errors, t) for t in thresholds]))


def mpjpe(errors: np.ndarray) -> float:
    """Mean of the finite per-joint errors (mm): missed (inf) and unlabelled (NaN) joints are
    left out, they count in the PCK instead."""
    errors = np.asarray(errors, np.float64)
    finite = np.isfinite(errors)
    return float(errors[finite].mean()) if finite.any() else float("nan")


def match_people(
    pred2d: np.ndarray, gt2d: np.ndarray, max_relative_distance: float = 0.5
) -> np.ndarray:
    """(Q, J, 3) predicted and (P, J, 3) ground-truth 2D joints (x, y, score/visibility) ->
    (P,) index of the matched prediction or -1. The distance of a pair is the mean 2D distance
    over joints present in both; a pair is accepted only below max_relative_distance times the
    ground-truth person's 2D box diagonal. Greedy one-to-one, closest pairs first."""
    pred2d = np.asarray(pred2d, np.float64).reshape(-1, *np.shape(gt2d)[-2:])
    gt2d = np.asarray(gt2d, np.float64).reshape(-1, pred2d.shape[1], pred2d.shape[2])
    match = np.full(len(gt2d), -1, np.int64)
    if len(pred2d) == 0 or len(gt2d) == 0:
        return match
    both = (gt2d[:, None, :, 2] > 0) & (pred2d[None, :, :, 2] > 0)  # (P, Q, J)
    gap = np.linalg.norm(gt2d[:, None, :, :2] - pred2d[None, :, :, :2], axis=-1)
    count = both.sum(-1)
    distance = np.where(count > 0, (gap * both).sum(-1) / np.maximum(count, 1), np.inf)
    limit = max_relative_distance * np.array([_diagonal(person) for person in gt2d])
    distance[distance > limit[:, None]] = np.inf
    taken = np.zeros(len(pred2d), bool)
    for flat in np.argsort(distance, axis=None, kind="stable"):
        p, q = np.unravel_index(flat, distance.shape)
        if not np.isfinite(distance[p, q]):
            break
        if match[p] < 0 and not taken[q]:
            match[p], taken[q] = q, True
    return match


def _diagonal(person: np.ndarray) -> float:
    """2D box diagonal of a person's labelled joints (0 if under 2)."""
    points = person[person[:, 2] > 0, :2]
    if len(points) < 2:
        return 0.0
    return float(np.linalg.norm(points.max(0) - points.min(0)))


class Pose3DEvaluator:
    """Accumulates images, then `summary()`:
    {"mpjpe", "pa_mpjpe", "pck", "auc"} over matched people, {"pck_all", "auc_all"} with
    unmatched ground truth as misses, and the counts "people_gt", "people_matched"."""

    def __init__(
        self,
        joints: tuple[int, ...] = EVAL_JOINTS,
        threshold: float = 150.0,
        max_relative_distance: float = 0.5,
    ) -> None:
        self.joints = list(joints)
        self.threshold = threshold
        self.max_relative_distance = max_relative_distance
        self.errors: list[np.ndarray] = []  # (J,) per matched person
        self.pa_errors: list[np.ndarray] = []
        self.misses = 0  # ground-truth people without a match
        self.people = 0

    def add_image(
        self, pred3d: np.ndarray, pred2d: np.ndarray, gt3d: np.ndarray, gt2d: np.ndarray
    ) -> np.ndarray:
        """One image: predictions (Q, 21, 3) mm + (Q, 21, 3) 2D, ground truth (P, 21, 3) mm +
        (P, 21, 3) 2D (same pixel frame as the predictions'). Returns the (P,) match."""
        match = match_people(pred2d, gt2d, self.max_relative_distance)
        self.people += len(match)
        self.misses += int((match < 0).sum())
        pred3d = np.asarray(pred3d, np.float64)
        for p, q in enumerate(match):
            if q < 0:
                continue
            gt = np.asarray(gt3d[p], np.float64)[None]
            for align, store in (("root", self.errors), ("procrustes", self.pa_errors)):
                errors = joint_errors(pred3d[q][None], gt, align)[0]
                # a labelled joint the prediction lacks is a miss, not a skipped joint
                errors[np.isnan(errors) & np.isfinite(gt[0]).all(-1)] = np.inf
                store.append(errors[self.joints])
        return match

    def summary(self) -> dict[str, float]:
        width = len(self.joints)
        matched = np.array(self.errors).reshape(-1, width)
        pa = np.array(self.pa_errors).reshape(-1, width)
        every = np.concatenate([matched, np.full((self.misses, width), np.inf)])
        return {
            "mpjpe": mpjpe(matched),
            "pa_mpjpe": mpjpe(pa),
            "pck": pck(matched, self.threshold),
            "auc": auc(matched),
            "pck_all": pck(every, self.threshold),
            "auc_all": auc(every),
            "people_gt": float(self.people),
            "people_matched": float(len(matched)),
        }
