"""The codec round trip on the real samples of every keypoint format (own skeleton, own metric),
and the behaviours changed for crowded and partly labelled people: Human-Art's redundant torso
limbs, the opt-in short-limb scoring, and the PAF averaging the encoder already does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from selecsls.datasets.augment import EvalResize, EvalScale
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.grouping import score_pairs
from selecsls.heads.skeletons import COCO17, HUMANART21
from selecsls.heads.skeletons.catalog import TORSO_LIMBS
from selecsls.heads.skeletons.coco import LIMBS18
from selecsls.tools.bench import roundtrip

GEOMETRIES = {"letterbox": EvalResize((512, 320)), "reference": EvalScale(368, 16, "height")}
# floors a little under what the round trip measures (docs/pose2d.md, "Round trip on the real
# samples of each format"): AP, or for MPII PCKh
FLOORS = {"coco": 0.985, "crowdpose": 0.93, "posetrack18": 0.88, "humanart": 0.98, "mpii": 99.0}


def sample_set(name: str) -> roundtrip.SampleSet:
    sample = roundtrip.SAMPLE_SETS[name]
    if not sample.present:
        pytest.skip(f"shared sample {sample.json} not present")
    return sample


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_round_trip_of_each_format_clears_its_floor(name, geometry):
    sample = sample_set(name)
    codec = Pose2DCodec(skeleton=roundtrip.skeleton_of(sample))
    trip = roundtrip.round_trip(sample, codec, GEOMETRIES[geometry])
    value = trip.metric["PCKh" if name == "mpii" else "AP"]
    assert value >= FLOORS[name], trip.metric
    assert trip.people_decoded == trip.people_gt  # no fragments, nobody lost


def test_coco_round_trip_is_unchanged_at_the_documented_size():
    trip = roundtrip.round_trip(
        sample_set("coco"), Pose2DCodec(), EvalResize((512, 320)), diagnose=True
    )
    assert trip.metric["AP"] == pytest.approx(0.990, abs=5e-4)
    # the one loss: a wrist whose elbow is unlabelled, which no limb reaches
    assert trip.causes == {"merged": 0, "paf_lost": 0, "chains": 1, "split": 0}


def test_coco_limbs_stay_openpose_and_humanart_adds_torso_limbs_last():
    assert COCO17.limb_indices == LIMBS18  # released models depend on these 19 limbs
    assert HUMANART21.limb_indices[: len(LIMBS18)] == LIMBS18  # COCO's channels first
    assert HUMANART21.limbs[-len(TORSO_LIMBS) :] == TORSO_LIMBS
    flip = HUMANART21.limb_flip  # every torso limb has its mirror
    assert sorted(flip) == list(range(len(HUMANART21.limbs)))


def drawn_person() -> np.ndarray:
    """(1, 21, 3) an upright Human-Art person (COCO's 17, fingers, toes) in input pixels."""
    offsets = [
        (0, 0), (4, -4), (-4, -4), (9, -2), (-9, -2), (18, 22), (-18, 22), (24, 50), (-24, 50),
        (26, 78), (-26, 78), (12, 84), (-12, 84), (14, 124), (-14, 124), (15, 162), (-15, 162),
        (28, 90), (-28, 90), (20, 168), (-20, 168),
    ]  # fmt: skip
    person = np.zeros((1, 21, 3), np.float32)
    person[0, :, :2] = np.array(offsets, np.float32) + (100, 40)
    person[0, :, 2] = 2
    return person


def test_one_unlabelled_shoulder_no_longer_splits_a_humanart_person():
    person = drawn_person()
    # as the Human-Art sample's person: the left arm unlabelled from the shoulder down
    unlabelled = ("left_shoulder", "left_elbow", "left_wrist", "left_finger")
    person[0, [HUMANART21.keypoints.index(n) for n in unlabelled], 2] = 0
    without = dataclasses.replace(HUMANART21, limbs=HUMANART21.limbs[: -len(TORSO_LIMBS)])
    for skeleton, expected in ((without, 3), (HUMANART21, 1)):
        codec = Pose2DCodec(skeleton=skeleton)
        targets = codec.encode(person, (256, 256))
        keypoints, _ = codec.decode(targets["heatmaps"], targets["pafs"])
        # without the torso limbs: head + right arm, right leg, left leg (no neck: no shoulder pair)
        assert len(keypoints) == expected, skeleton.name
    labelled = person[0, :, 2] > 0
    assert (keypoints[0, labelled, 2] > 0).all()
    np.testing.assert_allclose(keypoints[0, labelled, :2], person[0, labelled, :2], atol=0.1)


def test_diagnosis_counts_the_humanart_broken_chain():
    sample = sample_set("humanart")
    without = dataclasses.replace(HUMANART21, limbs=HUMANART21.limbs[: -len(TORSO_LIMBS)])
    augment = GEOMETRIES["reference"]
    before = roundtrip.round_trip(sample, Pose2DCodec(skeleton=without), augment, diagnose=True)
    after = roundtrip.round_trip(sample, Pose2DCodec(skeleton=HUMANART21), augment, diagnose=True)
    assert (before.causes["chains"], before.causes["split"]) == (1, 1)
    assert before.people_decoded == before.people_gt + 2  # one person in three pieces
    assert (after.causes["chains"], after.causes["split"]) == (0, 0)
    assert after.metric["AP"] > before.metric["AP"] + 0.1


def test_short_limbs_are_scored_by_the_field_norm_when_asked():
    # a vertical limb (the field points up) whose two peaks were clamped onto one map row: the
    # peaks' direction is horizontal noise
    pafs = np.zeros((2, 4, 8), np.float32)
    pafs[1] = -1.0
    start, end = np.array([[4.0, 0.0]]), np.array([[4.05, 0.0]])
    limb = np.zeros(1, np.int64)
    score, ratio = score_pairs(start, end, limb, pafs, 10, 0.05)
    assert ratio[0] == 0  # the default: rejected
    score, ratio = score_pairs(start, end, limb, pafs, 10, 0.05, min_length=1.0)
    assert ratio[0] == 1 and score[0] == pytest.approx(1.0)
    # a limb longer than min_length is still scored by its direction
    score, ratio = score_pairs(start, np.array([[6.0, 0.0]]), limb, pafs, 10, 0.05, 1.0)
    assert ratio[0] == 0
    assert Pose2DCodec(paf_min_length=1.0).grouping_options()["min_length"] == 1.0


def test_short_limb_scoring_recovers_the_posetrack_border_limb():
    sample = sample_set("posetrack18")
    augment = EvalResize((512, 320))
    default = roundtrip.round_trip(sample, Pose2DCodec(skeleton="posetrack18"), augment, True)
    short = Pose2DCodec(skeleton="posetrack18", paf_min_length=1.0)
    opted = roundtrip.round_trip(sample, short, augment, True)
    # a head cut by the image top: neck and head_bottom peaks on the first map row, 0.4 cells apart
    assert (default.causes["paf_lost"], opted.causes["paf_lost"]) == (1, 0)


def test_overlapping_limbs_of_one_type_are_averaged():
    """OpenPose's rule, which `_pafs` follows: where bands of the same limb type overlap, the
    field is the mean of their unit vectors (not the last one written)."""
    codec = Pose2DCodec()
    neck, right_shoulder = (
        COCO17.model_order.index("neck"),
        COCO17.model_order.index("right_shoulder"),
    )
    people = np.zeros((2, 18, 3), np.float32)
    # limb 0 (neck -> right shoulder): one pointing +x, one pointing +y, crossing at (67.5, 67.5)
    people[0, neck], people[0, right_shoulder] = (35.5, 67.5, 2), (99.5, 67.5, 2)
    people[1, neck], people[1, right_shoulder] = (67.5, 35.5, 2), (67.5, 99.5, 2)
    pafs = codec._pafs(people, 16, 16)
    cell = (67.5 - 3.5) / 8  # the crossing's cell
    row = col = int(cell)
    assert pafs[0, row, col] == pytest.approx(0.5) and pafs[1, row, col] == pytest.approx(0.5)
    assert pafs[0, row, 4] == pytest.approx(1.0) and pafs[1, row, 4] == pytest.approx(0.0)
