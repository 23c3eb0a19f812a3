"""MPII's PCKh: the percentage of labelled joints predicted within a fraction of the head size.

Definitions, from MPII's evaluation toolkit (evalMPII: evaluatePCKh.m, computePCK.m,
genTablePCK.m, util_get_head_size.m) and the HRNet / mmpose ports of it:

- A joint is correct when its distance to the ground truth, divided by the person's head
  size, is <= the threshold (0.5 for PCKh@0.5; inclusive, as computePCK's `<=`).
- Only labelled ground-truth joints count (MPII json: joints_vis > 0). A missing or non-finite
  prediction of a labelled joint is a miss (the toolkit sets NaN predictions to inf).
- Head size, official: SC_BIAS x the diagonal of the annotated head box, SC_BIAS = 0.6
  (`head_size_from_box`). MPII's json list layout carries no head boxes, so the caller passes
  head sizes, or uses `head_size_from_segment`: the head_top - upper_neck distance, factor 1.0.
  Why 1.0: the MPII paper defines PCKh's threshold as "50% of the head segment length"; the
  toolkit's 0.6 x box diagonal is its stand-in for that length, computed from the box that was
  annotated. The segment is the quantity itself (LIP's evaluation, on the same 16-joint order,
  uses it unscaled the same way). Person by person the two differ, so PCKh with the fallback
  is comparable with, not equal to, the official figure.
- The table averages left and right PCKh (each pooled over people) per joint type, as
  genTablePCK does: Head is the mean of upper_neck and head_top (the toolkit's columns 13 and
  14; HRNet's and mmpose's Python ports report head_top alone), then Shoulder, Elbow, Wrist,
  Hip, Knee, Ankle. "Mean" (the toolkit's "Total") pools every labelled joint but pelvis and
  thorax, which MPII does not score. "Mean@0.1" is the same at threshold 0.1 exactly (the
  HRNet port reads its curve at index 11, which is 0.11).

Values are percentages in [0, 100]; NaN where a joint was never labelled in the set.

MPII annotation order (as `skeletons.catalog.MPII16`): 0 r ankle, 1 r knee, 2 r hip, 3 l hip,
4 l knee, 5 l ankle, 6 pelvis, 7 thorax, 8 upper neck, 9 head top, 10 r wrist, 11 r elbow,
12 r shoulder, 13 l shoulder, 14 l elbow, 15 l wrist.

Bottom-up results must first be paired with ground-truth people: see `match_predictions`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_JOINTS = 16
PELVIS, THORAX, UPPER_NECK, HEAD_TOP = 6, 7, 8, 9
SC_BIAS = 0.6  # official head size = 0.6 x head box diagonal
# The official table: joint type -> the two MPII joints averaged (left/right, or neck + top).
TABLE = (
    ("Head", (UPPER_NECK, HEAD_TOP)),
    ("Shoulder", (12, 13)),
    ("Elbow", (11, 14)),
    ("Wrist", (10, 15)),
    ("Hip", (2, 3)),
    ("Knee", (1, 4)),
    ("Ankle", (0, 5)),
)
# "Mean" pools these: every joint but pelvis and thorax
SCORED_JOINTS = tuple(j for j in range(NUM_JOINTS) if j not in (PELVIS, THORAX))
# Normalised distances beyond this count as this in the matcher's tie-break
_TIE_BREAK_CAP = 1.0


def head_size_from_box(head_boxes: np.ndarray) -> np.ndarray:
    """(N, 4) head boxes (x1, y1, x2, y2) -> (N,) official head sizes, 0.6 x diagonal."""
    boxes = np.asarray(head_boxes, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"head_boxes must be (N, 4) x1, y1, x2, y2; got shape {boxes.shape}")
    return SC_BIAS * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)


def head_size_from_segment(gt: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(N, 16, 2) ground truth + (N, 16) labelled flags -> (N,) head_top - upper_neck length.

    The fallback head size when no head boxes exist (factor 1.0: see the module docstring).
    NaN for a person whose head_top or upper_neck is not labelled.
    """
    gt, visible = _check_people(gt, visible, "gt")
    length = np.linalg.norm(gt[:, HEAD_TOP] - gt[:, UPPER_NECK], axis=1)
    labelled = visible[:, HEAD_TOP] & visible[:, UPPER_NECK]
    return np.where(labelled, length, np.nan)


def normalised_distances(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray
) -> np.ndarray:
    """(N, K) distance / head size: NaN where the joint is not labelled (it does not count),
    inf where it is labelled but the prediction is missing (non-finite: a miss).

    pred, gt: (N, K, 2) in the same pixel frame; visible: (N, K); head_size: (N,), positive
    and finite for every person with a labelled joint (ValueError otherwise).
    """
    gt, visible = _check_people(gt, visible, "gt")
    pred = np.asarray(pred, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {pred.shape}, gt {gt.shape}: they must match")
    head_size = _check_head_size(head_size, visible)
    with np.errstate(invalid="ignore"):  # inf - inf for missing joints; replaced below
        distance = np.linalg.norm(pred - gt, axis=2)
    missing = ~np.isfinite(pred).all(axis=2)
    distance[missing] = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):  # people without labels: NaN heads
        scaled = distance / head_size[:, None]
    scaled[~visible] = np.nan
    return scaled


def pckh_per_joint(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_size: np.ndarray,
    threshold: float = 0.5,
) -> np.ndarray:
    """(K,) PCKh (%) of each joint pooled over people; NaN for a joint never labelled."""
    return _per_joint(normalised_distances(pred, gt, visible, head_size), threshold)


def pckh(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_size: np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """MPII's table: {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean",
    "Mean@0.1"}, percentages; the joint types and "Mean" at `threshold` (default 0.5).

    pred, gt: (N, 16, 2) in the same pixel frame, MPII order; visible: (N, 16) ground-truth
    joints_vis; head_size: (N,) pixels (`head_size_from_box` or `head_size_from_segment`).
    """
    scaled = normalised_distances(pred, gt, visible, head_size)
    if scaled.shape[1] != NUM_JOINTS:
        raise ValueError(f"MPII's table needs {NUM_JOINTS} joints, got {scaled.shape[1]}")
    per_joint = _per_joint(scaled, threshold)
    table = {name: float(0.5 * (per_joint[a] + per_joint[b])) for name, (a, b) in TABLE}
    table["Mean"] = _pooled(scaled[:, SCORED_JOINTS], threshold)
    table["Mean@0.1"] = _pooled(scaled[:, SCORED_JOINTS], 0.1)
    return table


def match_predictions(
    people_pred: Sequence[np.ndarray],
    people_gt: Sequence[np.ndarray],
    head_sizes: Sequence[np.ndarray] | None = None,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pair bottom-up predictions with ground-truth people, image by image, for `pckh`.

    people_pred[i]: (P, K, 3) image i's predicted people, (x, y, confidence); a joint with
    confidence <= 0 is not predicted. people_gt[i]: (G, K, 3) its ground truth, (x, y,
    joints_vis). head_sizes[i]: (G,) pixels; default `head_size_from_segment`.

    The matcher is greedy and one-to-one: for every (ground truth, prediction) pair it counts
    the ground truth's labelled joints that the prediction places within `threshold` head
    sizes; pairs are taken in order of most such joints, ties to the smaller mean normalised
    distance (capped at 1 head size, unpredicted joints at the cap), skipping people already
    paired. A pair with no joint within the threshold is not made. PCKh has no false positives:
    unpaired predictions are dropped, and an unpaired ground-truth person keeps NaN
    predictions, so its labelled joints count as misses.

    Returns (pred (N, K, 2), gt (N, K, 2), visible (N, K) bool, head_size (N,)), one row per
    ground-truth person of every image in order: the arguments of `pckh`.
    """
    if len(people_pred) != len(people_gt):
        raise ValueError(
            f"{len(people_pred)} images of predictions but {len(people_gt)} of ground truth"
        )
    if head_sizes is not None and len(head_sizes) != len(people_gt):
        raise ValueError(f"{len(head_sizes)} head size arrays for {len(people_gt)} images")
    rows: list[tuple[np.ndarray, ...]] = []
    for index, (pred, gt) in enumerate(zip(people_pred, people_gt)):
        heads = None if head_sizes is None else head_sizes[index]
        rows.append(_match_image(pred, gt, heads, threshold, f"image {index}"))
    if not rows:
        raise ValueError("no images to match")
    pred_rows, gt_rows, visible_rows, head_rows = (np.concatenate(parts) for parts in zip(*rows))
    return pred_rows, gt_rows, visible_rows, head_rows


def _match_image(
    pred: np.ndarray, gt: np.ndarray, heads: np.ndarray | None, threshold: float, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's matching (see `match_predictions`): its rows of pred, gt, visible, heads."""
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if gt.size == 0:  # an image without ground truth: K from its predictions, else MPII's
        gt = gt.reshape(0, pred.shape[1] if pred.ndim == 3 else NUM_JOINTS, 3)
    gt = _check_triplets(gt, f"{where}: people_gt")
    pred = _check_triplets(pred, f"{where}: people_pred", gt.shape[1])
    coords, visible = gt[..., :2], gt[..., 2] > 0
    heads = head_size_from_segment(coords, visible) if heads is None else heads
    try:
        heads = _check_head_size(heads, visible)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    # unpredicted joints become NaN, which normalised_distances scores as misses
    pred_xy = np.where(pred[..., 2:] > 0, pred[..., :2], np.nan)
    matched = np.full(coords.shape, np.nan)
    for g, p in _greedy_pairs(pred_xy, coords, visible, heads, threshold):
        matched[g] = pred_xy[p]
    return matched, coords, visible, heads


def _greedy_pairs(
    pred_xy: np.ndarray,
    coords: np.ndarray,
    visible: np.ndarray,
    heads: np.ndarray,
    threshold: float,
) -> list[tuple[int, int]]:
    """(ground truth, prediction) index pairs, greedy on (most correct joints, smallest capped
    mean distance). pred_xy (P, K, 2) with NaN for unpredicted joints; coords (G, K, 2)."""
    candidates = []
    for g in range(len(coords)):
        if not visible[g].any():
            continue  # nothing to score: pairing it would only take a prediction from others
        # this person against every prediction: P rows of the same ground truth
        same = np.zeros(len(pred_xy), np.int64) + g
        scaled = normalised_distances(pred_xy, coords[same], visible[same], heads[same])
        scaled = scaled[:, visible[g]]
        correct = (scaled <= threshold).sum(axis=1)
        spread = np.minimum(scaled, _TIE_BREAK_CAP).mean(axis=1)
        candidates += [(-int(correct[p]), float(spread[p]), g, p) for p in range(len(pred_xy))]
    pairs, used_gt, used_pred = [], set(), set()
    for minus_correct, _, g, p in sorted(candidates):
        if minus_correct == 0:
            break  # sorted: every remaining pair has no joint within the threshold
        if g not in used_gt and p not in used_pred:
            pairs.append((g, p))
            used_gt.add(g)
            used_pred.add(p)
    return pairs


def _per_joint(scaled: np.ndarray, threshold: float) -> np.ndarray:
    labelled = ~np.isnan(scaled)
    count = labelled.sum(axis=0)
    correct = (labelled & (np.nan_to_num(scaled, nan=np.inf) <= threshold)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 -> NaN: never labelled
        return 100.0 * correct / count


def _pooled(scaled: np.ndarray, threshold: float) -> float:
    labelled = ~np.isnan(scaled)
    if not labelled.any():
        return float("nan")
    return float(100.0 * (scaled[labelled] <= threshold).sum() / labelled.sum())


def _check_people(gt: np.ndarray, visible: np.ndarray, name: str) -> tuple[np.ndarray, ...]:
    """gt (N, K, 2) float64 and visible (N, K) bool, or ValueError naming the bad shape."""
    gt = np.asarray(gt, np.float64)
    if gt.ndim != 3 or gt.shape[2] != 2:
        raise ValueError(f"{name} must be (N, K, 2) x, y per joint; got shape {gt.shape}")
    visible = np.asarray(visible)
    if visible.shape != gt.shape[:2]:
        raise ValueError(f"visible has shape {visible.shape}, expected {gt.shape[:2]} (N, K)")
    return gt, visible > 0


def _check_head_size(head_size: np.ndarray, visible: np.ndarray) -> np.ndarray:
    head_size = np.asarray(head_size, np.float64)
    if head_size.shape != visible.shape[:1]:
        raise ValueError(f"head_size has shape {head_size.shape}, expected ({len(visible)},)")
    needed = visible.any(axis=1)
    bad = needed & ~(np.isfinite(head_size) & (head_size > 0))
    if bad.any():
        people = np.flatnonzero(bad).tolist()
        raise ValueError(
            f"people {people} have labelled joints but no positive finite head size (with "
            "the segment fallback: head_top or upper_neck unlabelled); pass head sizes or "
            "leave those people out"
        )
    return head_size


def _check_triplets(people: np.ndarray, name: str, num_joints: int | None = None) -> np.ndarray:
    people = np.asarray(people, np.float64)
    if people.size == 0 and num_joints is not None:
        return people.reshape(0, num_joints, 3)  # an image without predictions
    if people.ndim != 3 or people.shape[2] != 3:
        raise ValueError(f"{name} must be (people, K, 3); got shape {people.shape}")
    if num_joints is not None and people.shape[1] != num_joints:
        raise ValueError(f"{name} has {people.shape[1]} joints, the ground truth {num_joints}")
    return people
