"""The centre + offset codec: round trips scored by pycocotools (real COCO sample, synthetic
people), sub-pixel exactness, the flip rule for offsets, crowded and empty images, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_pose2d_codec import COCO_JSON, COCO_SAMPLE, one_person

from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.synthetic_people import generate
from selecsls.heads.flip_test import mirror_back
from selecsls.heads.pose2d.centre.codec import CentreCodec, pose_nms, sample_bilinear
from selecsls.heads.pose2d.metrics import evaluate_keypoints, people_to_results
from selecsls.heads.pose2d.peaks import person_scores
from selecsls.heads.skeletons import COCO17


def round_trip_ap(codec, annotation_file, image_dir, input_size, tmp_path) -> dict:
    """Encode the ground truth at the input size, decode, map back, evaluate (OKS AP)."""
    dataset = CocoKeypoints(annotation_file, image_dir, input_size, encoder=codec.encode)
    results, decoded, labelled = [], 0, 0
    for index in range(len(dataset)):
        sample = dataset[index]
        outputs = {key: sample[key] for key in codec.output_keys}
        keypoints, scores = codec.decode_outputs(outputs, sample["transform"].numpy())
        results += people_to_results(sample["image_id"], keypoints, scores)
        decoded += len(keypoints)
        labelled += int((sample["keypoints"][..., 2] > 0).any(-1).sum())
    stats = evaluate_keypoints(dataset.coco, results, tmp_path / "results.json", verbose=False)
    return {**stats, "decoded": decoded, "labelled": labelled}


@pytest.mark.skipif(not COCO_JSON.is_file(), reason="shared COCO sample not present")
def test_round_trip_real_coco_sample(tmp_path):
    stats = round_trip_ap(CentreCodec(), COCO_JSON, COCO_SAMPLE, (512, 320), tmp_path)
    assert stats["AP"] >= 0.990, stats  # the PAF codec's figure; this one measures 1.000
    assert stats["decoded"] == stats["labelled"]  # nobody lost, no duplicates


def test_round_trip_synthetic_people(tmp_path):
    json_path = generate(tmp_path / "synthetic", 40, seed=11, size=(368, 368))
    stats = round_trip_ap(
        CentreCodec(), json_path, tmp_path / "synthetic" / "images", (368, 368), tmp_path
    )
    assert stats["AP"] >= 0.93, stats


def test_single_person_sub_pixel_exact():
    codec = CentreCodec()
    person = one_person(100.3, 60.7)[None]
    targets = codec.encode(person, (256, 256))
    assert targets["heatmaps"].shape == (19, 32, 32) and targets["offsets"].shape == (36, 32, 32)
    assert targets["offset_weight"].shape == (18, 32, 32) and targets["mask"].shape == (1, 32, 32)
    for refine in (0.0, 3.0):  # offsets alone, and snapped to the heatmap peaks
        codec.refine_radius = refine
        keypoints, scores = codec.decode(targets["heatmaps"], targets["offsets"])
        assert keypoints.shape == (1, 17, 3) and scores.shape == (1,)
        np.testing.assert_allclose(keypoints[0, :, :2], person[0, :, :2], atol=0.02)
        assert (keypoints[0, :, 2] > 0.5).all()  # heatmaps read bilinearly between cells
    transform = np.array([[0.5, 0, 3.0], [0, 0.5, -2.0]], np.float32)
    mapped, _ = codec.decode(targets["heatmaps"], targets["offsets"], transform)
    np.testing.assert_allclose(mapped[0, :, 0], (person[0, :, 0] - 3.0) / 0.5, atol=0.1)
    np.testing.assert_allclose(mapped[0, :, 1], (person[0, :, 1] + 2.0) / 0.5, atol=0.1)


def test_offsets_point_from_cells_to_keypoints_and_weigh_by_scale():
    codec = CentreCodec()
    person = one_person(100.0, 60.0)
    person[3, 2] = 0  # an unlabelled ear: no offset target, weight 0
    targets = codec.encode(person[None], (256, 256))
    weight, offsets = targets["offset_weight"], targets["offsets"].reshape(18, 2, 32, 32)
    cells = np.argwhere(weight.max(0) > 0)  # (n, 2) rows, cols near the centre
    centre = codec.to_cells(person[person[:, 2] > 0, :2].mean(0))
    assert len(cells) > 0
    assert (np.hypot(cells[:, 1] - centre[0], cells[:, 0] - centre[1]) <= 2.0).all()
    nose = COCO17.model_from_annotation.index(0)
    row, col = cells[0]
    expected = codec.to_cells(person[0, :2]) - (col, row)
    np.testing.assert_allclose(offsets[nose, :, row, col], expected, atol=1e-5)
    ear = COCO17.model_from_annotation.index(3)
    assert weight[ear].max() == 0 and weight[nose].max() > 0
    # twice the size, half the weight (errors count relative to the person, as OKS does)
    big = person.copy()
    big[:, :2] = (person[:, :2] - 60) * 2 + 60
    big_weight = codec.encode(big[None], (256, 256))["offset_weight"]
    assert big_weight[nose].max() == pytest.approx(weight[nose].max() / 2, rel=1e-4)


def test_two_people_side_by_side_decode_as_two_and_each_cell_has_one_owner():
    codec = CentreCodec()
    people = np.stack([one_person(60.0, 40.0), one_person(130.0, 40.0)])
    targets = codec.encode(people, (256, 256))
    keypoints, scores = codec.decode(targets["heatmaps"], targets["offsets"])
    assert len(keypoints) == 2
    order = np.argsort(keypoints[:, 0, 0])
    np.testing.assert_allclose(keypoints[order, :, :2], people[:, :, :2], atol=0.05)


def test_flip_rule_mirrors_offsets_back():
    """Targets of the mirror image, mirrored back, are the targets of the image."""
    codec = CentreCodec()
    width = 256
    person = one_person(90.3, 50.2)
    mirrored = person.copy()
    mirrored[:, 0] = width - 1 - person[:, 0]
    mirrored = mirrored[list(COCO17.flip)]  # left and right swap in a mirror
    original = codec.encode(person[None], (width, 256))
    flipped = codec.encode(mirrored[None], (width, 256))
    back = mirror_back(
        {k: torch.from_numpy(flipped[k])[None] for k in ("heatmaps", "offsets")}, "coco17"
    )
    for key in ("heatmaps", "offsets"):
        np.testing.assert_allclose(back[key][0].numpy(), original[key], atol=1e-4)


def test_empty_and_crowd_only_images():
    codec = CentreCodec()
    targets = codec.encode(np.zeros((0, 17, 3), np.float32), (128, 96))
    assert targets["heatmaps"].shape == (19, 12, 16)
    assert not targets["heatmaps"].any() and not targets["offset_weight"].any()
    keypoints, scores = codec.decode(targets["heatmaps"], targets["offsets"])
    assert keypoints.shape == (0, 17, 3) and scores.shape == (0,)
    # a crowd covering the image: nothing to learn there, and no person encoded
    crowd = np.ones((96, 128), np.uint8)
    targets = codec.encode(np.zeros((0, 17, 3), np.float32), (128, 96), crowd)
    assert not targets["mask"].any()
    # a person with no labelled keypoint has no centre
    unlabelled = one_person()[None].copy()
    unlabelled[..., 2] = 0
    assert not codec.encode(unlabelled, (256, 256))["heatmaps"].any()


def test_bad_maps_and_settings_raise_clear_errors():
    codec = CentreCodec()
    with pytest.raises(ValueError, match="19 heatmap and 38 offset channels"):
        codec.decode(np.zeros((19, 8, 8)), np.zeros((38, 8, 8)))
    with pytest.raises(ValueError, match="offset_radius"):
        CentreCodec(offset_radius=1.0)
    for fraction in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"score_fraction {fraction}"):
            CentreCodec(score_fraction=fraction)
    with pytest.raises(ValueError, match="transform"):
        person = codec.encode(one_person()[None], (256, 256))
        codec.decode(person["heatmaps"], person["offsets"], np.zeros((2, 3)))


def test_person_score_ranks_a_partly_hidden_person_by_what_it_shows():
    """A person with 7 of 17 keypoints hidden (heatmap scores near 0) and the rest sure ranks
    above one whose every keypoint is doubtful; the mean over all keypoints ranks them the
    other way round."""
    hidden = np.full(17, 0.8, np.float32)
    hidden[10:] = 0.001  # 10 of 17 shown: round(0.6 x 17) = 10
    doubtful = np.full(17, 0.5, np.float32)
    scores = np.stack([hidden, doubtful])
    assert scores.mean(1)[0] < scores.mean(1)[1]
    np.testing.assert_allclose(person_scores(scores, 0.6), [0.8, 0.5], rtol=1e-6)
    np.testing.assert_allclose(person_scores(scores, 1.0), scores.mean(1), rtol=1e-6)
    assert person_scores(scores, 0.01).tolist() == pytest.approx([0.8, 0.5])  # at least one
    # the decoder scores people this way: one encoded person with a few keypoint maps zeroed
    codec = CentreCodec()
    targets = codec.encode(one_person()[None], (256, 256))
    _, (whole,) = codec.decode(targets["heatmaps"], targets["offsets"])
    heatmaps = targets["heatmaps"].copy()
    heatmaps[:5] = 0  # 5 keypoints unseen: their scores drop to the floor
    keypoints, (part,) = codec.decode(heatmaps, targets["offsets"])
    unseen = np.array(codec.keypoint_skeleton.annotation_from_model) < 5
    assert keypoints[0, unseen, 2].max() == pytest.approx(1e-3)
    assert part >= 0.9 * whole  # the mean of all 18 model keypoints would lose 5 / 18 of it


def test_pose_nms_drops_near_duplicates_only():
    pose = one_person()[:, :2] / 8
    poses = np.stack([pose, pose + 0.1, pose + 10.0])
    kept = pose_nms(poses, np.array([0.5, 0.9, 0.7]), 0.1)
    assert kept.tolist() == [1, 2]  # the weaker duplicate goes; the far person stays
    assert pose_nms(poses, np.array([0.5, 0.9, 0.7]), 0.0).tolist() == [1, 2, 0]


def test_bilinear_sampling_reads_each_channel_at_its_point():
    maps = np.stack([np.arange(20, dtype=np.float32).reshape(4, 5)] * 2)
    values = sample_bilinear(maps, np.array([[[1.5, 2.0], [0.0, 0.5]]], np.float32))
    np.testing.assert_allclose(values, [[11.5, 2.5]])


def test_unlabelled_types_give_no_offset_target_and_json_results_are_plain():
    codec = CentreCodec()
    person = one_person()
    person[[1, 2, 3, 4], 2] = 0  # no face
    targets = codec.encode(person[None], (256, 256))
    keypoints, scores = codec.decode(targets["heatmaps"], targets["offsets"])
    results = people_to_results(7, keypoints, scores)
    assert json.loads(json.dumps(results))[0]["image_id"] == 7
    assert len(results[0]["keypoints"]) == 51
