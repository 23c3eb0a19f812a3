"""CrowdPose AP / AR and AP easy / medium / hard against hand-computed cases and the real sample.

Hand computation: pycocotools' AP at one OKS threshold t samples the interpolated precision at
the 101 recall thresholds 0, 0.01, ..., 1 (0 where the recall is never reached); AP averages
the 10 thresholds 0.50, 0.55, ..., 0.95; a detection is a true positive at t when OKS >= t.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from selecsls.heads.pose2d.crowdpose_metrics import (
    CROWDPOSE_SIGMAS,
    STAT_NAMES,
    crowd_split,
    crowdpose_ap,
)

BOX = [50.0, 20.0, 40.0, 100.0]  # x, y, w, h
# the official OKS scale: box area x 0.53 = 40 x 100 x 0.53 = 2120 px^2
SCALE = 40.0 * 100.0 * 0.53
JOINTS = [(60.0 + 2 * i, 30.0 + 6 * i) for i in range(14)]  # inside the box, all labelled


def person(image_id: int, ann_id: int, num_keypoints: int = 14) -> dict:
    # "area": 1.0 is a decoy: the official tool ignores it. Were it used, the shifted person's
    # OKS would be ~0 (medium AP 0, not 0.5); were the box area used without the 0.53 factor,
    # its OKS would be 0.72 ** 0.53 = 0.84 (medium AP 0.7).
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": list(BOX),
        "keypoints": [v for x, y in JOINTS for v in (x, y, 2)],
        "num_keypoints": num_keypoints,
        "iscrowd": 0,
        "area": 1.0,
    }


def ground_truth(crowd_indices: list[float]) -> dict:
    """One image per crowd index (ids 1, 2, ...), one labelled person each (ids 11, 12, ...)."""
    images = [
        {"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200, "crowdIndex": ci}
        for i, ci in enumerate(crowd_indices, start=1)
    ]
    annotations = [person(i, 10 + i) for i in range(1, len(crowd_indices) + 1)]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1}]}


def detection(image_id: int, shifts: list[float], score: float) -> dict:
    """The ground-truth person moved right by shifts[k] px at joint k."""
    keypoints = [v for (x, y), dx in zip(JOINTS, shifts) for v in (x + dx, y, 1)]
    return {"image_id": image_id, "category_id": 1, "keypoints": keypoints, "score": score}


def shifts_for_oks(oks: float) -> list[float]:
    """Per-joint shifts giving OKS exactly `oks`: OKS averages exp(-d_k^2 / (2 s (2 sigma_k)^2))
    over the labelled joints, so d_k = 2 sigma_k sqrt(2 s e) with e = -ln(oks) makes every
    term exp(-e) = oks."""
    e = -math.log(oks)
    return [2 * sigma * math.sqrt(2 * SCALE * e) for sigma in CROWDPOSE_SIGMAS]


def three_crowd_levels() -> tuple[dict, list[dict]]:
    """Images 1, 2, 3 with crowd indices 0.05 (easy), 0.5 (medium), 0.9 (hard), one person
    each: image 1 predicted exactly (OKS 1, score 0.9), image 2 at OKS 0.72 (score 0.8),
    image 3 1000 px off (OKS 0, score 0.1)."""
    gt = ground_truth([0.05, 0.5, 0.9])
    results = [
        detection(1, [0.0] * 14, 0.9),
        detection(2, shifts_for_oks(0.72), 0.8),
        detection(3, [1000.0] * 14, 0.1),
    ]
    return gt, results


def test_crowd_split_thresholds_and_boundaries():
    # official: easy crowdIndex < 0.2, medium 0.2 <= crowdIndex < 0.8, hard crowdIndex >= 0.8
    values = [0.0, 0.1, 0.19999, 0.2, 0.5, 0.79999, 0.8, 1.0]
    images = [{"id": 100 + i, "crowdIndex": v} for i, v in enumerate(values)]
    assert crowd_split(images) == {
        "easy": [100, 101, 102],
        "medium": [103, 104, 105],
        "hard": [106, 107],
    }
    # the paper's wording (easy below 0.1) is available as an option, not the default
    assert crowd_split(images, thresholds=(0.1, 0.8))["easy"] == [100]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ({"id": 7}, "image 7 has no 'crowdIndex'"),
        ({"id": 7, "crowdIndex": "high"}, "image 7 has crowdIndex 'high'"),
        ({"id": 7, "crowdIndex": float("nan")}, "image 7 has crowdIndex nan"),
        ({"crowdIndex": 0.5}, "image entry 0 is not a COCO image dict"),
    ],
)
def test_crowd_split_rejects_bad_crowd_index(image, message):
    with pytest.raises(ValueError, match=message):
        crowd_split([image])


def test_hand_computed_easy_medium_hard():
    gt, results = three_crowd_levels()
    before = copy.deepcopy(gt)
    stats = crowdpose_ap(gt, results)
    assert gt == before  # the caller's dict keeps its own "area"
    assert list(stats) == list(STAT_NAMES)
    # Per split (one person, one detection each):
    #   easy: OKS 1 is a true positive at all 10 thresholds -> precision 1 everywhere -> AP 1.
    #   medium: OKS 0.72 matches at t = 0.50 ... 0.70 (5 thresholds, AP 1 each) and is a false
    #     positive at 0.75 ... 0.95 (recall 0, AP 0) -> AP 5 / 10 = 0.5.
    #   hard: the only detection is a false positive, the person is missed -> AP 0.
    assert stats["AP_easy"] == pytest.approx(1.0)
    assert stats["AP_medium"] == pytest.approx(0.5)
    assert stats["AP_hard"] == pytest.approx(0.0)
    # All images, 3 people, detections by score: 0.9 (TP), 0.8 (TP for t <= 0.70), 0.1 (FP).
    #   t <= 0.70: TP, TP, FP -> recall 1/3, 2/3; precision 1 up to recall 2/3, i.e. at the 67
    #     recall thresholds 0 ... 0.66 -> AP_t = 67 / 101.
    #   t >= 0.75: TP, FP, FP -> precision 1 up to recall 1/3: 34 thresholds -> AP_t = 34 / 101.
    #   AP = (5 x 67 + 5 x 34) / (10 x 101) = 0.5; AP50 = 67 / 101; AP75 = 34 / 101.
    #   AR = recall averaged over t: (5 x 2/3 + 5 x 1/3) / 10 = 0.5; AR50 = 2/3; AR75 = 1/3.
    assert stats["AP"] == pytest.approx(0.5)
    assert stats["AP50"] == pytest.approx(67 / 101)
    assert stats["AP75"] == pytest.approx(34 / 101)
    assert stats["AR"] == pytest.approx(0.5)
    assert stats["AR50"] == pytest.approx(2 / 3)
    assert stats["AR75"] == pytest.approx(1 / 3)


def test_split_without_ground_truth_reports_minus_one():
    # image 1 easy with a perfect detection; image 2 hard whose only person has
    # num_keypoints 0 (ignored, as the official tool ignores it); no medium image at all.
    gt = ground_truth([0.0, 0.95])
    gt["annotations"][1]["num_keypoints"] = 0
    stats = crowdpose_ap(gt, [detection(1, [0.0] * 14, 1.0)])
    assert stats["AP_easy"] == pytest.approx(1.0)
    assert stats["AP_medium"] == -1.0  # no images
    assert stats["AP_hard"] == -1.0  # images, but no person that counts
    assert stats["AP"] == pytest.approx(1.0)


def test_no_results_scores_zero():
    gt, _ = three_crowd_levels()
    stats = crowdpose_ap(gt, [])
    assert stats == dict.fromkeys(STAT_NAMES, 0.0)


def test_only_the_best_20_detections_per_image_count():
    # 20 far-off detections outscore the exact one: maxDets 20 drops it -> AP 0, AR 0
    gt = ground_truth([0.5])
    results = [detection(1, [1000.0 + k] * 14, 0.9) for k in range(20)]
    results.append(detection(1, [0.0] * 14, 0.5))
    stats = crowdpose_ap(gt, results)
    assert stats["AP"] == 0.0 and stats["AR"] == 0.0 and stats["AP_medium"] == 0.0


def test_real_sample_ground_truth_as_results(shared_data):
    path = shared_data / "pose_samples" / "crowdpose" / "test_crowdpose.json"
    data = json.loads(path.read_text())
    # both sample images are medium (crowd index 0.33 and 0.39)
    assert crowd_split(data["images"]) == {"easy": [], "medium": [106848, 103319], "hard": []}
    # people with num_keypoints 0 are ignored ground truth: submitting them would only add
    # unmatched detections, so the ground truth that counts is what is submitted
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in data["annotations"]
        if a["num_keypoints"] > 0
    ]
    stats = crowdpose_ap(path, results)
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_medium"):
        assert stats[name] == pytest.approx(1.0), name
    assert stats["AP_easy"] == -1.0 and stats["AP_hard"] == -1.0  # empty splits
    # and a miss lowers it: drop one of the 4 people -> recall 3/4 at every threshold
    assert crowdpose_ap(path, results[1:])["AR"] == pytest.approx(0.75)


def test_bad_input_names_the_problem():
    gt, results = three_crowd_levels()
    with pytest.raises(ValueError, match="result 0 has 39 keypoint numbers, expected 42"):
        crowdpose_ap(gt, [{**results[0], "keypoints": results[0]["keypoints"][:39]}])
    with pytest.raises(ValueError, match="image_id 99 is not in gt"):
        crowdpose_ap(gt, [{**results[0], "image_id": 99}])
    with pytest.raises(ValueError, match="result 0 has no 'score'"):
        crowdpose_ap(gt, [{k: v for k, v in results[0].items() if k != "score"}])
    missing = copy.deepcopy(gt)
    del missing["annotations"][0]["num_keypoints"]
    with pytest.raises(ValueError, match=r"annotation 11 \(image 1\) has no 'num_keypoints'"):
        crowdpose_ap(missing, results)
    with pytest.raises(ValueError, match="expected 51 .17 keypoints"):
        crowdpose_ap(gt, results, sigmas=np.full(17, 0.07))  # COCO's count, not CrowdPose's
    no_index = copy.deepcopy(gt)
    del no_index["images"][2]["crowdIndex"]
    with pytest.raises(ValueError, match="image 3 has no 'crowdIndex'"):
        crowdpose_ap(no_index, results)
