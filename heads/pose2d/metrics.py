"""COCO keypoint evaluation (OKS AP/AR) through pycocotools, with its known traps guarded.

- Results are {image_id, category_id: 1, keypoints: 51 numbers in ORIGINAL image pixels, score};
  no "bbox" key (it would change the area COCOeval uses).
- Only the 20 best detections per image count (COCOeval's maxDets for keypoints): we keep the top
  20 per image ourselves so the saved json is what was scored.
- `COCO.loadRes([])` crashes: with no detections every figure is 0 and the table says so.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats for iouType "keypoints", in order.
STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75", "AR_medium", "AR_large",
)  # fmt: skip
MAX_PER_IMAGE = 20


def people_to_results(
    image_id: int, keypoints: np.ndarray, scores: np.ndarray, category_id: int = 1
) -> list[dict]:
    """(P, K, 3) keypoints (x, y, confidence) in original pixels + (P,) scores -> result dicts.

    The third value of each keypoint is written as 1 where detected (COCOeval ignores it).
    """
    if len(scores) == 0:  # reshape(0, -1, 3) of an empty array is ambiguous and raises
        return []
    keypoints = np.asarray(keypoints, np.float64).reshape(len(scores), -1, 3).copy()
    keypoints[..., 2] = (keypoints[..., 2] > 0).astype(np.float64)
    return [
        {
            "image_id": int(image_id),
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in person.reshape(-1)],
            "score": float(score),
        }
        for person, score in zip(keypoints, scores)
    ]


def top_per_image(results: list[dict], limit: int = MAX_PER_IMAGE) -> list[dict]:
    """Keep the `limit` best-scored results of every image."""
    by_image: dict[int, list[dict]] = {}
    for result in results:
        by_image.setdefault(result["image_id"], []).append(result)
    kept = []
    for items in by_image.values():
        kept.extend(sorted(items, key=lambda r: -r["score"])[:limit])
    return kept


def load_ground_truth(gt: str | Path | COCO) -> COCO:
    """A COCO object from a path (quietly) or as given."""
    if isinstance(gt, COCO):
        return gt
    path = Path(gt)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth json not found: {path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def evaluate_keypoints(
    gt: str | Path | COCO,
    results: list[dict],
    result_path: str | Path | None = None,
    image_ids: list[int] | None = None,
    sigmas: np.ndarray | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """OKS AP/AR of `results` against `gt`; returns {stat name: value} and, with verbose, prints
    pycocotools' full summary table. `result_path` receives the (top-20) results json, written
    atomically. `image_ids` restricts the evaluation (default: every image of gt); `sigmas` must be
    given for a skeleton with K != 17 keypoints.
    """
    coco_gt = load_ground_truth(gt)
    results = top_per_image(results)
    if result_path is not None:
        write_json_atomic(Path(result_path), results)
    if not results:
        if verbose:
            print("no detections: every AP/AR is 0")
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))  # loadRes adds keys in place
    evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    if sigmas is not None:
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        lines = [line for line in table.getvalue().splitlines() if "Average" in line]
        print("\n".join(lines))
    # pycocotools reports -1 where a category has no ground truth; keep that visible as-is
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}


def write_json_atomic(path: Path, data) -> None:
    """Write json to a temporary file beside `path`, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
