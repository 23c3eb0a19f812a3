"""CrowdPose evaluation: OKS AP/AR and AP easy / medium / hard by crowd index, as CrowdPose's
official tool reports them, computed with pycocotools' COCOeval.

The official tool (crowdposetools, github.com/Jeff-sjtu/CrowdPose, crowdpose-api/PythonAPI/
crowdposetools/cocoeval.py) is a fork of an older pycocotools; xtcocotools' "keypoints_crowd"
mode with use_area=False (open-mmlab, what mmpose runs) reproduces it, except that xtcocotools
drops detections whose keypoint confidences are all 0 and the official tool keeps them (as we
do). xtcocotools is not a dependency: its wheels are built against NumPy 1 and fail to import
under NumPy 2. Against pycocotools the official tool differs in:

- OKS area: the ground truth's bbox width x height x 0.53, not an annotation "area" (CrowdPose
  annotations have none). We give a private copy of the ground truth that area.
- 14 sigmas, `CROWDPOSE_SIGMAS` (hard-coded in the official tool).
- The summary: AP, AP50, AP75, AR, AR50, AR75 on the "all" area range with 20 detections per
  image (pycocotools' keypoint defaults), then AP per crowd split. The area ranges (medium,
  large) are computed but not reported.
- The split (`crowd_split`): by the image field "crowdIndex", easy below 0.2, medium from 0.2
  to below 0.8, hard from 0.8. The tool calls `get_type_result(first=0.2, second=0.8)` and
  tests `crowdIndex < first`, then `< second`, else hard; xtcocotools uses the same values.
  (Descriptions putting easy below 0.1 do not match the tool's code; `thresholds` can select
  other values.)
- A split's AP is the mean of COCOeval's precision array over every IoU threshold and recall
  threshold on the "all" area range, with the evaluation restricted to the split's images:
  the same number as that restricted evaluation's AP; -1 where the split has no ground truth
  (no images, or only ignored people), as the tool prints. The tool rounds it to 4 decimals for
  printing; we return it unrounded.

Everything else (matching, ignored ground truth: iscrowd or "num_keypoints" == 0, OKS over the
ground truth's labelled joints) is pycocotools' own, which the fork shares.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .metrics import load_ground_truth, top_per_image

# CrowdPose order: l/r shoulder, elbow, wrist, hip, knee, ankle, then head (top) and neck.
CROWDPOSE_SIGMAS = np.array(
    [.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089, .079, .079]
)  # fmt: skip
# easy: crowdIndex < 0.2; medium: 0.2 <= crowdIndex < 0.8; hard: crowdIndex >= 0.8
CROWD_THRESHOLDS = (0.2, 0.8)
SPLITS = ("easy", "medium", "hard")
STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
# The official tool's OKS scale: bbox area x 0.53 (a person fills about half of its box).
BOX_AREA_FACTOR = 0.53
# Where pycocotools' keypoint `stats` keep AP, AP50, AP75, AR, AR50, AR75 (all areas).
_OVERALL_STAT_INDEX = (0, 1, 2, 5, 6, 7)


def crowd_split(
    image_infos: Iterable[dict], thresholds: tuple[float, float] = CROWD_THRESHOLDS
) -> dict[str, list[int]]:
    """Image ids by crowd level: {"easy": [...], "medium": [...], "hard": [...]}.

    `image_infos` are COCO image dicts carrying "id" and "crowdIndex". With thresholds (a, b):
    easy is crowdIndex < a, medium a <= crowdIndex < b, hard crowdIndex >= b, as the official
    tool splits. Ids keep their input order. ValueError for a missing or non-numeric crowdIndex.
    """
    easy_below, hard_from = _check_thresholds(thresholds)
    split: dict[str, list[int]] = {name: [] for name in SPLITS}
    for position, info in enumerate(image_infos):
        if not isinstance(info, dict) or "id" not in info:
            raise ValueError(f"image entry {position} is not a COCO image dict with an 'id'")
        value = info.get("crowdIndex")
        if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
            what = "has no 'crowdIndex'" if value is None else f"has crowdIndex {value!r}"
            raise ValueError(
                f"image {info['id']} {what}: CrowdPose's AP easy/medium/hard needs a finite "
                "number per image (is this a CrowdPose json?)"
            )
        if value < easy_below:
            split["easy"].append(int(info["id"]))
        elif value < hard_from:
            split["medium"].append(int(info["id"]))
        else:
            split["hard"].append(int(info["id"]))
    return split


def crowdpose_ap(
    gt: str | Path | COCO | dict,
    results: list[dict],
    sigmas: Sequence[float] | np.ndarray | None = None,
    thresholds: tuple[float, float] = CROWD_THRESHOLDS,
    verbose: bool = False,
) -> dict[str, float]:
    """CrowdPose's summary of `results` against `gt`: {name: value} for `STAT_NAMES`.

    gt: a CrowdPose COCO-format json: path, COCO object or dict (left unchanged); every image needs
    "crowdIndex", every annotation "bbox", "keypoints" (3 K numbers) and "num_keypoints".
    results: {image_id, category_id, keypoints: 3 K numbers, score} in original pixels; only the
    20 best per image count. sigmas: K per-keypoint OKS sigmas, default `CROWDPOSE_SIGMAS`.
    AP/AR are in [0, 1]; a split without ground truth reports -1, as the official tool does.
    With no results at all every figure is 0 (-1 for splits without ground truth).
    """
    sigmas = np.asarray(CROWDPOSE_SIGMAS if sigmas is None else sigmas, np.float64)
    if sigmas.ndim != 1 or len(sigmas) == 0:
        raise ValueError(f"sigmas must be a 1-D list of K values, got shape {sigmas.shape}")
    coco_gt = crowdpose_ground_truth(gt, num_keypoints=len(sigmas))
    split = crowd_split(coco_gt.dataset["images"], thresholds)  # validates before the slow part
    _check_results(results, coco_gt, len(sigmas))
    results = top_per_image(results)
    evaluator = COCOeval(coco_gt, _load_results(coco_gt, results), "keypoints")
    evaluator.params.kpt_oks_sigmas = sigmas
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress lines
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        stats = [float(evaluator.stats[i]) for i in _OVERALL_STAT_INDEX]
        stats += [_split_ap(evaluator, split[name]) for name in SPLITS]
    summary = dict(zip(STAT_NAMES, stats))
    if verbose:
        print(format_summary(summary))
    return summary


def crowdpose_ground_truth(gt: str | Path | COCO | dict, num_keypoints: int = 14) -> COCO:
    """A private COCO copy of `gt` (json path, COCO object or COCO-format dict), checked, whose
    annotations' "area" is the official tool's OKS scale: bbox width x height x 0.53.
    ValueError naming the first bad annotation."""
    source = gt if isinstance(gt, dict) else load_ground_truth(gt).dataset
    dataset = copy.deepcopy(source)
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ValueError(f"ground truth has no '{key}' list: not a COCO-format json")
    for annotation in dataset["annotations"]:
        _check_annotation(annotation, num_keypoints)
        width, height = annotation["bbox"][2], annotation["bbox"][3]
        # the official computeOks and evaluateImg both use this, ignoring any "area" field
        annotation["area"] = float(width) * float(height) * BOX_AREA_FACTOR
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def format_summary(summary: dict[str, float]) -> str:
    """The summary as lines like the official tool's, e.g. ' AP_easy     = 0.750'."""
    return "\n".join(f" {name:<11} = {summary[name]:0.3f}" for name in STAT_NAMES)


def _split_ap(evaluator: COCOeval, image_ids: list[int]) -> float:
    """The official split AP: COCOeval rerun on `image_ids`, the mean of its precision over
    IoU and recall thresholds, categories and maxDets on area range 0 ("all"); -1 if empty."""
    if not image_ids:
        # an empty imgIds would make pycocotools' getAnnIds load every annotation; the tool's
        # result for an empty split is an all -1 precision array, i.e. -1
        return -1.0
    evaluator.params.imgIds = sorted(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    # -1 entries are not filtered out, as in the tool: with CrowdPose's single category the
    # array is either all -1 (no ground truth in the split) or all >= 0
    return float(np.mean(evaluator.eval["precision"][:, :, :, 0, :]))


def _load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """pycocotools' loadRes on a copy (it edits the dicts); an empty result set, which loadRes
    cannot take, becomes a COCO with the ground truth's images and no annotations."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco_gt.loadRes(copy.deepcopy(results))
        empty = COCO()
        empty.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
        empty.createIndex()
        return empty


def _check_thresholds(thresholds: tuple[float, float]) -> tuple[float, float]:
    if len(thresholds) != 2 or not thresholds[0] <= thresholds[1]:
        raise ValueError(f"thresholds must be (easy_below, hard_from), ascending: {thresholds}")
    return float(thresholds[0]), float(thresholds[1])


def _check_annotation(annotation: dict, num_keypoints: int) -> None:
    name = f"annotation {annotation.get('id', '?')} (image {annotation.get('image_id', '?')})"
    for key in ("image_id", "category_id", "bbox", "keypoints", "num_keypoints"):
        if key not in annotation:
            raise ValueError(f"{name} has no '{key}'")
    if len(annotation["bbox"]) != 4:
        raise ValueError(f"{name}: bbox must be [x, y, w, h], got {annotation['bbox']!r}")
    if len(annotation["keypoints"]) != 3 * num_keypoints:
        raise ValueError(
            f"{name} has {len(annotation['keypoints'])} keypoint numbers, expected "
            f"{3 * num_keypoints} ({num_keypoints} keypoints x 3, one sigma per keypoint)"
        )


def _check_results(results: list[dict], coco_gt: COCO, num_keypoints: int) -> None:
    image_ids = set(coco_gt.getImgIds())
    for position, result in enumerate(results):
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in result:
                raise ValueError(f"result {position} has no '{key}'")
        if result["image_id"] not in image_ids:
            raise ValueError(f"result {position}: image_id {result['image_id']} is not in gt")
        if len(result["keypoints"]) != 3 * num_keypoints:
            raise ValueError(
                f"result {position} has {len(result['keypoints'])} keypoint numbers, expected "
                f"{3 * num_keypoints}"
            )
