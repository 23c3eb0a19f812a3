"""2D pose codec: round trips scored by pycocotools, geometry, empty inputs, evaluation guards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.synthetic_people import generate
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.metrics import evaluate_keypoints, people_to_results, top_per_image
from selecsls.heads.pose2d.peaks import people_to_annotation
from selecsls.heads.skeletons import COCO17

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_SAMPLE = DATA / "coco_sample"
COCO_JSON = COCO_SAMPLE / "person_keypoints_sample.json"


def round_trip_ap(annotation_file, image_dir, input_size, tmp_path) -> dict:
    """Encode the ground truth at the network's input size, decode, map back, evaluate."""
    codec = Pose2DCodec()
    dataset = CocoKeypoints(annotation_file, image_dir, input_size, encoder=codec.encode)
    results = []
    for index in range(len(dataset)):
        sample = dataset[index]
        keypoints, scores = codec.decode(
            sample["heatmaps"], sample["pafs"], sample["transform"].numpy()
        )
        results += people_to_results(sample["image_id"], keypoints, scores)
    stats = evaluate_keypoints(dataset.coco, results, tmp_path / "results.json", verbose=False)
    assert json.loads((tmp_path / "results.json").read_text()) == top_per_image(results)
    return stats


@pytest.mark.skipif(not COCO_JSON.is_file(), reason="shared COCO sample not present")
def test_round_trip_real_coco_sample(tmp_path):
    stats = round_trip_ap(COCO_JSON, COCO_SAMPLE, (512, 320), tmp_path)
    assert stats["AP"] >= 0.96, stats  # lightweight OpenPose's decoder: 0.961


def test_round_trip_synthetic(tmp_path):
    json_path = generate(tmp_path / "synthetic", 40, seed=11, size=(368, 368))
    stats = round_trip_ap(json_path, tmp_path / "synthetic" / "images", (368, 368), tmp_path)
    assert stats["AP"] >= 0.9, stats


def one_person(x0=100.0, y0=60.0) -> np.ndarray:
    """A plausible upright person (COCO order, input pixels)."""
    offsets = [
        (0, 0), (4, -4), (-4, -4), (9, -2), (-9, -2), (18, 22), (-18, 22), (24, 50), (-24, 50),
        (26, 78), (-26, 78), (12, 84), (-12, 84), (14, 124), (-14, 124), (15, 162), (-15, 162),
    ]  # fmt: skip
    person = np.zeros((17, 3), np.float32)
    person[:, :2] = np.array(offsets, np.float32) + (x0, y0)
    person[:, 2] = 2
    return person


def test_single_person_sub_pixel_exact():
    codec = Pose2DCodec()
    person = one_person(100.3, 60.7)[None]
    targets = codec.encode(person, (256, 256))
    assert targets["heatmaps"].shape == (19, 32, 32) and targets["pafs"].shape == (38, 32, 32)
    assert targets["heatmaps"][:18].max() <= 1.0 and targets["heatmaps"].min() >= 0.0
    keypoints, scores = codec.decode(targets["heatmaps"], targets["pafs"])
    assert keypoints.shape == (1, 17, 3) and scores.shape == (1,)
    np.testing.assert_allclose(keypoints[0, :, :2], person[0, :, :2], atol=0.05)
    # a scaled transform maps back to original pixels
    transform = np.array([[0.5, 0, 3.0], [0, 0.5, -2.0]], np.float32)
    mapped, _ = codec.decode(targets["heatmaps"], targets["pafs"], transform)
    np.testing.assert_allclose(mapped[0, :, 0], (person[0, :, 0] - 3.0) / 0.5, atol=0.2)
    np.testing.assert_allclose(mapped[0, :, 1], (person[0, :, 1] + 2.0) / 0.5, atol=0.2)


def test_decode_accepts_low_precision_tensors_and_rejects_bad_transforms():
    codec = Pose2DCodec()
    targets = codec.encode(one_person()[None], (256, 256))
    outputs = {k: torch.from_numpy(targets[k])[None].bfloat16() for k in ("heatmaps", "pafs")}
    ((keypoints, scores),) = codec.decode_batch(outputs)
    assert len(keypoints) == 1 and (keypoints[0, :, 2] > 0).all()
    np.testing.assert_allclose(keypoints[0, :, :2], one_person()[:, :2], atol=1.0)
    with pytest.raises(ValueError, match="cannot be inverted"):
        codec.decode(targets["heatmaps"], targets["pafs"], np.full((2, 3), np.nan))


def test_pafs_are_unit_vectors_along_limbs():
    codec = Pose2DCodec()
    targets = codec.encode(one_person()[None], (256, 256))
    pafs = targets["pafs"].reshape(19, 2, 32, 32)
    norms = np.linalg.norm(pafs, axis=1)
    assert np.all(norms <= 1.0 + 1e-5)
    # limb 0 = neck -> right shoulder points to -x (the person's right is image left here)
    limb = pafs[0][:, norms[0] > 0.5]
    assert limb[0].mean() < -0.9


def test_two_people_are_separated_and_ranked():
    codec = Pose2DCodec()
    people = np.stack([one_person(60, 40), one_person(190, 50)])
    # second person: no face, wrists or ankles (limb ends: it stays one person), 8 of 17
    # keypoints, fewer than the 10 (60%) that score a person -> lower
    people[1, [0, 1, 2, 3, 4, 9, 10, 15, 16], 2] = 0
    targets = codec.encode(people, (256, 256))
    keypoints, scores = codec.decode(targets["heatmaps"], targets["pafs"])
    assert len(keypoints) == 2 and scores[0] >= scores[1]
    np.testing.assert_allclose(keypoints[0, :, :2], people[0, :, :2], atol=0.05)


def test_person_score_is_the_mean_of_the_best_keypoints():
    """A person decoded with 10 of 17 keypoints, all sure, ranks above one with all 17 doubtful
    (OpenPose's mean x (n - 1) ranked them the other way round: 0.9 x 9 < 0.5 x 16); with
    fewer than 10 found its missing ones count as 0."""
    people = np.zeros((3, 18, 3), np.float32)  # model order: COCO's 17 + the neck
    order = COCO17.annotation_from_model
    people[0, list(order[:10]), 2] = 0.9
    people[1, list(order), 2] = 0.5
    people[2, list(order[:5]), 2] = 0.9
    keypoints, scores = people_to_annotation(people, order, min_keypoints=3)
    np.testing.assert_allclose(scores, [0.9, 0.5, 0.45], rtol=1e-6)
    assert keypoints.shape == (3, 17, 3)
    _, everything = people_to_annotation(people, order, min_keypoints=3, score_fraction=1.0)
    np.testing.assert_allclose(everything, [0.9 * 10 / 17, 0.5, 0.9 * 5 / 17], rtol=1e-6)
    _, kept = people_to_annotation(people, order, min_keypoints=6)
    assert len(kept) == 2  # the 5-keypoint person is dropped
    for fraction in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"score_fraction {fraction}"):
            Pose2DCodec(score_fraction=fraction)


def test_empty_inputs():
    codec = Pose2DCodec()
    targets = codec.encode(np.zeros((0, 17, 3), np.float32), (100, 60))
    assert targets["heatmaps"].shape == (19, 8, 14)  # 2 * ceil(60/16), 2 * ceil(100/16)
    assert np.all(targets["heatmaps"][18] == 1) and not targets["pafs"].any()
    keypoints, scores = codec.decode(targets["heatmaps"], targets["pafs"])
    assert keypoints.shape == (0, 17, 3) and scores.shape == (0,)
    keypoints, scores = codec.decode(np.zeros((19, 0, 0)), np.zeros((38, 0, 0)))
    assert len(keypoints) == 0
    batch = {"heatmaps": torch.zeros(2, 19, 4, 4), "pafs": torch.zeros(2, 38, 4, 4)}
    assert [len(k) for k, _ in codec.decode_batch(batch)] == [0, 0]


def test_loss_mask_from_ignore_mask():
    codec = Pose2DCodec()
    ignore = np.zeros((64, 64), np.uint8)
    ignore[:32, :16] = 1
    mask = codec.encode(np.zeros((0, 17, 3)), (64, 64), ignore)["mask"]
    assert mask.shape == (1, 8, 8)
    assert not mask[0, :4, :2].any() and mask[0, 4:].all() and mask[0, :, 2:].all()


@pytest.mark.skipif(not COCO_JSON.is_file(), reason="shared COCO sample not present")
def test_evaluation_guards(tmp_path):
    stats = evaluate_keypoints(COCO_JSON, [], tmp_path / "empty.json", verbose=False)
    assert stats["AP"] == 0.0 and json.loads((tmp_path / "empty.json").read_text()) == []
    many = [
        {"image_id": 1, "category_id": 1, "keypoints": [0] * 51, "score": float(s)}
        for s in range(30)
    ]
    kept = top_per_image(many)
    assert len(kept) == 20 and min(r["score"] for r in kept) == 10
    with pytest.raises(FileNotFoundError):
        evaluate_keypoints(tmp_path / "missing.json", many)


def test_peak_cap_keeps_the_highest_per_keypoint_type():
    from selecsls.heads.pose2d.peaks import find_peaks

    rng = np.random.default_rng(0)
    noise = rng.random((3, 40, 64)).astype(np.float32)  # thousands of local maxima
    every = find_peaks(noise, 0.1)
    capped = find_peaks(noise, 0.1, max_per_kind=5)
    assert len(every.kind) > 3 * 5
    assert np.bincount(capped.kind, minlength=3).tolist() == [5, 5, 5]
    for k in range(3):
        best = np.sort(every.score[every.kind == k])[::-1][:5]
        assert np.allclose(np.sort(capped.score[capped.kind == k])[::-1], best)


def test_no_people_gives_no_results():
    assert people_to_results(7, np.zeros((0, 17, 3)), np.zeros(0)) == []


def test_decode_bench_times_the_host_half_of_the_graph_path():
    from selecsls.tools.bench import decode

    row = decode.bench(Pose2DCodec(), (128, 96), 2, frames=2, noise=0.0, seed=0, repeats=1)
    assert row["found"] == 2 and 0 < row["slots_ms"] < 1e4 and 0 < row["peaks_ms"] < 1e4


def test_decode_bench_counts_the_device_halfs_kernels():
    from selecsls.tools.bench import decode

    threads = torch.get_num_threads()
    row = decode.device_half(Pose2DCodec(), (128, 96), repeats=1)
    assert 40 <= row["kernels"] <= 90 and row["ms"] > 0
    assert torch.get_num_threads() == threads  # restored after timing on one thread
