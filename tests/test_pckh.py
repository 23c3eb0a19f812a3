"""MPII PCKh@0.5 against hand-computed cases: the threshold (inclusive), invisible joints,
left/right averaging, Head = upper neck + head top, the pooled Mean without pelvis and thorax,
head sizes, the bottom-up matcher, and the real MPII sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selecsls.heads.pose2d.pckh import (
    HEAD_TOP,
    UPPER_NECK,
    head_size_from_box,
    head_size_from_segment,
    match_predictions,
    pckh,
    pckh_per_joint,
)

NAN = float("nan")
# MPII order: 0 r ankle, 1 r knee, 2 r hip, 3 l hip, 4 l knee, 5 l ankle, 6 pelvis, 7 thorax,
# 8 upper neck, 9 head top, 10 r wrist, 11 r elbow, 12 r shoulder, 13 l shoulder, 14 l elbow,
# 15 l wrist. Offsets are prediction - ground truth along x, in px; NAN = not predicted.
# Person A, head size 10: within 0.5 means <= 5 px, within 0.1 <= 1 px.
A_OFFSETS = [5, 0, 6, 4, 0, 6, 100, 0, 1, 0, NAN, 0, 0, 0, 7, 2]
# Person B, head size 20: <= 10 px and <= 2 px. Joints 0 and 15 are not labelled (their
# predictions, 1000 px off and missing, must not count).
B_OFFSETS = [1000, 8, 10, 12, 0, 0, 0, 0, 2, 15, 0, 11, 3, 0, 0, NAN]
B_VISIBLE = [0] + [1] * 14 + [0]


def two_people() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pred, gt (2, 16, 2), visible (2, 16), head_size (2,) of persons A and B."""
    gt = np.stack([np.arange(32.0).reshape(16, 2), 100 + np.arange(32.0).reshape(16, 2)])
    pred = gt.copy()
    pred[:, :, 0] += np.array([A_OFFSETS, B_OFFSETS])
    pred[0, 0] = gt[0, 0] + (3, 4)  # A's right ankle: 5 px diagonally, exactly at 0.5 heads
    visible = np.array([[1] * 16, B_VISIBLE])
    return pred, gt, visible, np.array([10.0, 20.0])


def test_table_by_hand():
    # correct at 0.5 (A | B, "-" = not labelled):
    #   r ankle  5 (= 0.5, inclusive) yes | -        l ankle 6 no | 0 yes  -> Ankle (100 + 50) / 2
    #   r knee   0 yes | 8 yes                       l knee 0 yes | 0 yes  -> Knee 100
    #   r hip    6 no | 10 (= 0.5) yes               l hip  4 yes | 12 no  -> Hip (50 + 50) / 2
    #   up. neck 1 yes | 2 yes                       head top 0 yes | 15 no -> Head (100 + 50) / 2
    #   r wrist  missing no | 0 yes                  l wrist 2 yes | -      -> Wrist (50 + 100) / 2
    #   r elbow  0 yes | 11 no                       l elbow 7 no | 0 yes  -> Elbow 50
    #   r shoulder 0 yes | 3 yes                     l shoulder 0 yes | 0 yes -> Shoulder 100
    # Mean pools the 14 scored joints (not pelvis, thorax): A 14 labelled, 10 correct; B 12
    # labelled, 9 correct -> 19 / 26. (A's pelvis, 100 px off, would lower it if counted.)
    # Mean@0.1 (A <= 1 px, B <= 2 px; 1 and 2 px are exactly 0.1): A r knee, l knee, neck,
    # head top, r elbow, both shoulders = 7; B l knee, l ankle, neck, r wrist, l shoulder,
    # l elbow = 6 -> 13 / 26.
    table = pckh(*two_people())
    assert table == pytest.approx(
        {
            "Head": 75.0,  # head top alone (mmpose's "Head") would be 50
            "Shoulder": 100.0,
            "Elbow": 50.0,
            "Wrist": 75.0,  # pooled over both wrists it would be 2 / 3
            "Hip": 50.0,
            "Knee": 100.0,
            "Ankle": 75.0,
            "Mean": 100 * 19 / 26,
            "Mean@0.1": 50.0,
        }
    )


def test_per_joint_and_threshold():
    pred, gt, visible, heads = two_people()
    per_joint = pckh_per_joint(pred, gt, visible, heads)
    assert per_joint[0] == 100.0  # only A's r ankle is labelled, at exactly 0.5
    assert per_joint[15] == 100.0  # only A's l wrist is labelled
    assert per_joint[6] == 50.0  # pelvis: A 100 px off, B exact (reported, not in the Mean)
    # a tighter threshold: at 0.4 A's r ankle (0.5) fails, B's r knee (0.4) still passes
    tight = pckh_per_joint(pred, gt, visible, heads, threshold=0.4)
    assert tight[0] == 0.0 and tight[1] == 100.0
    # Mean@0.1 is at 0.1 exactly: 1.05 px at head size 10 misses (HRNet's port, reading its
    # curve at 0.11, would count it)
    table = pckh(gt[:1] + (1.05, 0.0), gt[:1], visible[:1], heads[:1])
    assert table["Mean"] == 100.0 and table["Mean@0.1"] == 0.0


def test_invisible_joints_never_count():
    pred, gt, visible, heads = two_people()
    moved = pred.copy()
    moved[1, 0] += 1e6  # B's unlabelled r ankle, anywhere
    moved[1, 15] = 0.0  # B's unlabelled l wrist, now predicted
    assert pckh(moved, gt, visible, heads) == pytest.approx(pckh(pred, gt, visible, heads))
    # a joint labelled nowhere has no PCKh: NaN, and its table entry NaN
    visible = visible.copy()
    visible[:, [0, 5]] = 0
    table = pckh(pred, gt, visible, heads)
    assert np.isnan(table["Ankle"]) and table["Knee"] == 100.0


def test_head_sizes():
    gt = np.zeros((2, 16, 2))
    gt[:, UPPER_NECK] = (30.0, 40.0)  # head top at the origin: a 50 px segment
    visible = np.ones((2, 16))
    visible[1, HEAD_TOP] = 0
    sizes = head_size_from_segment(gt, visible)
    assert sizes[0] == 50.0 and np.isnan(sizes[1])
    # official: 0.6 x the head box diagonal; a 30 x 40 box has a 50 px diagonal
    assert head_size_from_box(np.array([[10.0, 20.0, 40.0, 60.0]])) == pytest.approx([30.0])


def test_bad_input_names_the_problem():
    pred, gt, visible, heads = two_people()
    with pytest.raises(ValueError, match=r"gt must be \(N, K, 2\)"):
        pckh(pred, gt[..., :1], visible, heads)
    with pytest.raises(ValueError, match=r"pred has shape \(2, 15, 2\)"):
        pckh(pred[:, :15], gt, visible, heads)
    with pytest.raises(ValueError, match=r"visible has shape \(2, 15\)"):
        pckh(pred, gt, visible[:, :15], heads)
    with pytest.raises(ValueError, match=r"head_size has shape \(1,\)"):
        pckh(pred, gt, visible, heads[:1])
    with pytest.raises(ValueError, match=r"people \[1\] have labelled joints but no"):
        pckh(pred, gt, visible, np.array([10.0, 0.0]))
    with pytest.raises(ValueError, match="needs 16 joints, got 14"):
        pckh(pred[:, :14], gt[:, :14], visible[:, :14], heads)
    with pytest.raises(ValueError, match=r"head_boxes must be \(N, 4\)"):
        head_size_from_box(np.zeros((2, 2)))
    # a person without any labelled joint needs no head size
    visible = visible.copy()
    visible[1] = 0
    assert pckh(pred, gt, visible, np.array([10.0, NAN]))["Knee"] == 100.0


def stick_person(x0: float) -> np.ndarray:
    """(16, 3) a labelled person at x0: joint k at (x0 + 3 k, 10 k), head top 10 px above the
    upper neck and at the same x, so the segment fallback gives a head size of 10 px."""
    joints = np.stack([x0 + 3.0 * np.arange(16), 10.0 * np.arange(16), np.ones(16)], axis=1)
    joints[HEAD_TOP, :2] = joints[UPPER_NECK, :2] - (0.0, 10.0)
    return joints


def test_matcher_pairs_people_and_counts_the_unmatched_as_misses():
    left, right = stick_person(0.0), stick_person(200.0)
    wrong = right.copy()
    wrong[:8, 0] += 50.0  # a prediction with only 8 of right's 16 joints within 5 px
    far = stick_person(1000.0)  # a false positive: PCKh ignores it
    # image 0: predictions in another order than the people, plus the weaker candidate; image
    # 1: its person is not predicted at all; image 2: no people, one prediction
    people_pred = [np.stack([wrong, right, far, left]), np.zeros((0, 16, 3)), far[None]]
    people_gt = [np.stack([left, right]), stick_person(500.0)[None], np.zeros((0, 16, 3))]
    pred, gt, visible, heads = match_predictions(people_pred, people_gt)
    assert pred.shape == gt.shape == (3, 16, 2) and heads == pytest.approx([10.0, 10.0, 10.0])
    assert np.array_equal(pred[0], left[:, :2]) and np.array_equal(pred[1], right[:, :2])
    assert np.isnan(pred[2]).all()  # the unpredicted person
    # every joint of 2 of the 3 people is exact: 2 / 3 of each table entry
    assert pckh(pred, gt, visible, heads) == pytest.approx(
        dict.fromkeys(["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"], 200 / 3)
        | {"Mean": 200 / 3, "Mean@0.1": 200 / 3}
    )


def test_matcher_prefers_more_correct_joints_then_smaller_distance():
    person = stick_person(0.0)
    most = person.copy()
    most[[0, 1], 0] += 30.0  # 14 of 16 joints within 0.5 heads, exact
    fewer = person.copy()
    fewer[[0, 1, 2, 3], 0] += 30.0  # 12 of 16
    pred, gt, visible, heads = match_predictions([np.stack([fewer, most])], [person[None]])
    assert np.array_equal(pred[0], most[:, :2])
    # a tie on correct joints (all 16) goes to the closer one: 4 px off everywhere loses to
    # exact, which Mean@0.1 (1 px) tells apart
    near = person.copy()
    near[:, 0] += 4.0
    pred, gt, visible, heads = match_predictions([np.stack([near, person])], [person[None]])
    assert pckh(pred, gt, visible, heads)["Mean@0.1"] == 100.0
    # joints predicted with confidence 0 are not predicted: misses, even when in place
    unsure = person.copy()
    unsure[[10, 15], 2] = 0.0  # both wrists
    pred, gt, visible, heads = match_predictions([unsure[None]], [person[None]])
    table = pckh(pred, gt, visible, heads)
    assert table["Wrist"] == 0.0 and table["Mean"] == pytest.approx(100 * 12 / 14)


def test_matcher_bad_input():
    person = stick_person(0.0)[None]
    with pytest.raises(ValueError, match="2 images of predictions but 1 of ground truth"):
        match_predictions([person, person], [person])
    with pytest.raises(ValueError, match=r"image 0: people_pred has 14 joints"):
        match_predictions([person[:, :14]], [person])
    no_head = person.copy()
    no_head[0, HEAD_TOP, 2] = 0  # the segment fallback cannot size this person
    with pytest.raises(ValueError, match=r"image 0: people \[0\] have labelled joints"):
        match_predictions([person], [no_head])
    # given head sizes replace the fallback
    pred, *_ = match_predictions([person], [no_head], head_sizes=[np.array([10.0])])
    assert np.array_equal(pred[0], person[0, :, :2])


def test_real_sample_ground_truth_as_predictions(shared_data):
    entries = json.loads((shared_data / "pose_samples" / "mpii" / "test_mpii.json").read_text())
    gt = np.array([e["joints"] for e in entries], np.float64)
    visible = np.array([e["joints_vis"] for e in entries])
    heads = head_size_from_segment(gt, visible)
    assert np.all(heads > 20)  # every sample person has both head joints labelled
    assert pckh(gt, gt, visible, heads) == pytest.approx(
        dict.fromkeys(["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"], 100.0)
        | {"Mean": 100.0, "Mean@0.1": 100.0}
    )
    # shifted by 0.3 head sizes: every joint within 0.5, none within 0.1
    shifted = gt + 0.3 * heads[:, None, None] * np.array([0.6, 0.8])
    table = pckh(shifted, gt, visible, heads)
    assert table["Mean"] == 100.0 and table["Mean@0.1"] == 0.0
