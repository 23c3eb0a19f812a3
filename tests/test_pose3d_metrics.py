"""3D metrics against values computed by hand on small fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from selecsls.heads.pose3d.metrics import (
    EVAL_JOINTS,
    Pose3DEvaluator,
    auc,
    joint_errors,
    match_people,
    mpjpe,
    pck,
)


def test_root_relative_errors_ignore_translation():
    gt = np.array([[[0, 0, 0], [100, 0, 0], [0, 100, 0]]], float)
    pred = gt + [1000, -50, 200]  # a different absolute position ...
    pred[0, 2] += [0, 0, 30]  # ... and one joint 30 mm off
    errors = joint_errors(pred, gt, "root", root=0)
    np.testing.assert_allclose(errors, [[0, 0, 30]])
    assert mpjpe(errors) == pytest.approx(10.0)
    np.testing.assert_allclose(
        joint_errors(pred, gt, "none", root=0)[0, 0], np.sqrt(1000**2 + 50**2 + 200**2)
    )


def test_procrustes_alignment_by_hand():
    # two joints: any segment maps onto any other by a similarity, so PA error is 0
    gt = np.array([[[0, 0, 0], [100, 0, 0]]], float)
    pred = np.array([[[0, 0, 0], [0, 50, 0]]], float)
    np.testing.assert_allclose(joint_errors(pred, gt, "root", root=0), [[0, np.hypot(100, 50)]])
    np.testing.assert_allclose(joint_errors(pred, gt, "procrustes", root=0), [[0, 0]], atol=1e-9)
    # a square against a rectangle: the best similarity maps the square's corners (+-1, +-1)
    # to (+-s, +-s) with s = (2 * 4 + 1 * 4) / 8 = 1.5 against the rectangle (+-2, +-1): every
    # corner is (0.5, 0.5) off, so each PA error is sqrt(0.5)
    square = np.array([[[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]], float)
    rectangle = square * [2, 1, 1]
    pa = joint_errors(square, rectangle, "procrustes", root=0)
    np.testing.assert_allclose(pa, np.full((1, 4), np.sqrt(0.5)), atol=1e-9)


def test_pck_and_auc_by_hand():
    errors = np.array([0, 50, 100, 149, 151, np.inf, np.nan])  # inf: missed, NaN: unlabelled
    assert pck(errors) == pytest.approx(100 * 4 / 6)
    # thresholds 0, 5, ..., 150: 1 joint passes at t < 50 (10 thresholds), 2 for 50..95 (10),
    # 3 for 100..145 (10) and 4 at 150: (10 + 20 + 30 + 4) / (31 * 6)
    assert auc(errors) == pytest.approx(100 * 64 / (31 * 6))
    assert np.isnan(pck(np.array([np.nan])))


def person(offset_x: float) -> tuple[np.ndarray, np.ndarray]:
    """A random 21-joint person 4 m away (3D mm) and its 2D projection (pixels, v = 1)."""
    rng = np.random.default_rng(abs(int(offset_x)))
    pose = rng.normal(size=(21, 3)) * 200 + [offset_x, 0, 4000]
    points = np.ones((21, 3))
    points[:, :2] = pose[:, :2] / pose[:, 2:] * 500 + [320, 240]
    return pose, points


def test_all_and_matched_people_by_hand():
    gt_a, gt_a2d = person(-800)
    gt_b, gt_b2d = person(900)
    pred_a = gt_a.copy()
    pred_a[[j for j in range(21) if j != 14]] += [50, 0, 0]  # every joint 50 mm off, root-relative
    _, far2d = person(5000)  # a false positive far from everybody: ignored
    evaluator = Pose3DEvaluator()
    match = evaluator.add_image(
        np.stack([pred_a, gt_b * 0]), np.stack([gt_a2d, far2d]), np.stack([gt_a, gt_b]),
        np.stack([gt_a2d, gt_b2d]),
    )  # fmt: skip
    np.testing.assert_array_equal(match, [0, -1])
    summary = evaluator.summary()
    assert summary["people_gt"] == 2 and summary["people_matched"] == 1
    assert summary["mpjpe"] == pytest.approx(50.0)
    assert summary["pck"] == 100.0 and summary["pck_all"] == 50.0  # B's 16 joints are misses
    assert summary["auc"] == pytest.approx(100 * 21 / 31)  # passes from t = 50 mm on
    assert summary["auc_all"] == pytest.approx(50 * 21 / 31)
    assert summary["pa_mpjpe"] <= summary["mpjpe"]
    assert len(EVAL_JOINTS) == 16 and 14 not in EVAL_JOINTS


def test_matching_is_one_to_one_and_bounded():
    _, a2d = person(-800)
    _, b2d = person(900)
    near_a = a2d.copy()
    near_a[:, :2] += 2
    # two predictions near A: the closer wins, the other may not take B
    np.testing.assert_array_equal(
        match_people(np.stack([near_a, a2d]), np.stack([a2d, b2d])), [1, -1]
    )
    np.testing.assert_array_equal(match_people(np.zeros((0, 21, 3)), np.stack([a2d])), [-1])
    missing = a2d.copy()
    missing[:, 2] = 0
    np.testing.assert_array_equal(match_people(np.stack([missing]), np.stack([a2d])), [-1])


def test_undetected_joint_of_a_matched_person_is_a_miss():
    gt, gt2d = person(100)
    pred = gt.copy()
    pred[3] = np.nan
    evaluator = Pose3DEvaluator()
    evaluator.add_image(pred[None], gt2d[None], gt[None], gt2d[None])
    summary = evaluator.summary()
    assert summary["mpjpe"] == pytest.approx(0.0, abs=1e-9)
    assert summary["pck"] == pytest.approx(100 * 15 / 16)
    with pytest.raises(ValueError, match="align"):
        joint_errors(pred[None], gt[None], "bogus")
