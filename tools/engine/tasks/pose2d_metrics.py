"""Scoring a pose2d evaluation by its dataset's own metric.

- every format: pycocotools OKS AP/AR with the skeleton's sigmas;
- CrowdPose: its official summary instead (AP/AR plus AP easy / medium / hard by crowd index,
  OKS areas from the boxes: `heads.pose2d.crowdpose_metrics`);
- MPII: PCKh@0.5 per joint group and its mean (`heads.pose2d.pckh`, people matched greedily,
  head sizes from the head segment since the json carries no head boxes), beside OKS AP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from selecsls.datasets.coco import CocoKeypoints
from selecsls.heads.pose2d.crowdpose_metrics import crowdpose_ap, format_summary
from selecsls.heads.pose2d.metrics import evaluate_keypoints, top_per_image, write_json_atomic
from selecsls.heads.pose2d.pckh import match_predictions, pckh


def score_results(
    task: Any,
    dataset: CocoKeypoints,
    results: list[dict],
    result_path: Path | None,
    verbose: bool,
) -> dict[str, float]:
    """{metric: value} of `results` (COCO results, original pixels) on the images of the val
    `dataset`, by data.format's metric; `result_path` receives the scored detections."""
    coco, image_ids = dataset.coco, dataset.image_ids
    data_format = task.config.get("data", {}).get("format", "coco")
    skeleton = task.codec.keypoint_skeleton
    if data_format == "crowdpose":
        if result_path is not None:
            write_json_atomic(result_path, top_per_image(results))
        metrics = crowdpose_ap(subset(coco, image_ids), results, skeleton.sigma_array)
        if verbose:
            print(format_summary(metrics))
        return metrics
    metrics = evaluate_keypoints(
        dataset.scoring_ground_truth(),
        results,
        result_path=result_path,
        image_ids=image_ids,
        sigmas=skeleton.sigma_array,
        verbose=verbose,
    )
    if data_format == "mpii":
        table = pckh_of_results(coco, image_ids, results, skeleton.num_keypoints)
        if verbose:
            print("PCKh@0.5: " + ", ".join(f"{k} {v:.1f}" for k, v in table.items()))
        metrics.update({f"PCKh_{k}" if k != "Mean" else "PCKh": v for k, v in table.items()})
    return metrics


def subset(coco: COCO, image_ids: list[int]) -> dict:
    """The json dict of `coco` restricted to `image_ids` (what an evaluation of them scores)."""
    keep = {int(i) for i in image_ids}
    dataset = coco.dataset
    return {
        **dataset,
        "images": [i for i in dataset["images"] if i["id"] in keep],
        "annotations": [a for a in dataset["annotations"] if a["image_id"] in keep],
    }


def pckh_of_results(
    coco: COCO, image_ids: list[int], results: list[dict], num_keypoints: int
) -> dict[str, float]:
    """PCKh@0.5 table of bottom-up `results` against the annotated people of each image."""
    predicted: dict[int, list[np.ndarray]] = {int(i): [] for i in image_ids}
    for result in results:
        if int(result["image_id"]) in predicted:
            person = np.asarray(result["keypoints"], np.float32).reshape(num_keypoints, 3)
            predicted[int(result["image_id"])].append(person)
    people_pred, people_gt = [], []
    for image_id in image_ids:
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=int(image_id)))
        people = [
            a["keypoints"]
            for a in annotations
            if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")
        ]
        people_gt.append(np.asarray(people, np.float32).reshape(-1, num_keypoints, 3))
        found = predicted[int(image_id)]
        people_pred.append(np.stack(found) if found else np.zeros((0, num_keypoints, 3)))
    return pckh(*match_predictions(people_pred, people_gt))
