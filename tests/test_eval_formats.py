"""Each dataset's own metric through tools/eval.py: CrowdPose's AP easy/medium/hard and MPII's
PCKh, from an oracle network (the encoded ground truth) of the dataset's skeleton."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval_pose2d import OracleModel, evaluate

from selecsls.datasets.augment import EvalResize
from selecsls.datasets.keypoint_formats import open_keypoint_dataset
from selecsls.heads import build_model, save_model
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.tools.evaluation import pose2d as eval_pose2d

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_samples"
SIZE = (512, 512)


def oracle_evaluation(tmp_path, monkeypatch, fmt, skeleton, ann, images) -> dict:
    codec = Pose2DCodec(skeleton=skeleton)
    dataset = open_keypoint_dataset(fmt, ann, images, input_size=SIZE, augment=EvalResize(SIZE))
    targets = [codec.encode(s["keypoints"].numpy(), SIZE) for s in dataset]
    monkeypatch.setattr(eval_pose2d, "load_weights", lambda args, ckpt: OracleModel(targets))
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {"skeleton": skeleton}}})
    checkpoint = save_model(model, tmp_path / f"{skeleton}.pt")
    metrics = tmp_path / "metrics.json"
    argv = [str(checkpoint), "--ann", str(ann), "--images", str(images), "--format", fmt]
    argv += ["--input-size", "512x512", "--batch-size", "1", "--json", str(metrics)]
    assert evaluate(argv) == 0
    return json.loads(metrics.read_text())


@pytest.mark.skipif(not (SAMPLES / "crowdpose").is_dir(), reason="shared samples not present")
def test_crowdpose_is_scored_by_its_crowd_split(tmp_path, monkeypatch, capsys):
    crowd = SAMPLES / "crowdpose"
    metrics = oracle_evaluation(
        tmp_path, monkeypatch, "crowdpose", "crowdpose14", crowd / "test_crowdpose.json", crowd
    )
    out = capsys.readouterr().out
    assert " AP_medium   =" in out and "AP_easy" in metrics
    # both sample images have crowd index 0.33 and 0.39: medium; no easy or hard images
    assert metrics["AP_easy"] == -1 and metrics["AP_hard"] == -1
    assert metrics["AP_medium"] == pytest.approx(metrics["AP"]) and metrics["AP"] >= 0.9


@pytest.mark.skipif(not (SAMPLES / "mpii").is_dir(), reason="shared samples not present")
def test_mpii_is_scored_by_pckh(tmp_path, monkeypatch, capsys):
    mpii = SAMPLES / "mpii"
    metrics = oracle_evaluation(
        tmp_path, monkeypatch, "mpii", "mpii16", mpii / "test_mpii.json", mpii
    )
    out = capsys.readouterr().out
    assert "PCKh@0.5: Head" in out
    # the encoded ground truth decodes to within a pixel or two: every labelled joint is correct
    assert metrics["PCKh"] >= 99.0, metrics
    assert {"PCKh_Head", "PCKh_Wrist", "PCKh_Ankle", "AP"} <= set(metrics)


@pytest.mark.skipif(not (SAMPLES / "crowdpose").is_dir(), reason="shared samples not present")
def test_a_model_of_another_skeleton_is_refused(tmp_path, capsys):
    crowd = SAMPLES / "crowdpose"
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}})  # COCO-17
    checkpoint = save_model(model, tmp_path / "coco.pt")
    argv = [str(checkpoint), "--ann", str(crowd / "test_crowdpose.json"), "--images", str(crowd)]
    assert evaluate([*argv, "--format", "crowdpose"]) != 0
    err = capsys.readouterr().err
    assert "14 keypoints" in err and "coco17 has 17" in err


@pytest.mark.skipif(not (SAMPLES / "humanart").is_dir(), reason="shared samples not present")
def test_humanart_is_scored_on_its_21_points(tmp_path, monkeypatch):
    humanart = SAMPLES / "humanart"
    dataset = open_keypoint_dataset("humanart", humanart / "test_humanart.json", humanart)
    truth = dataset.scoring_ground_truth()
    annotation = truth.dataset["annotations"][0]
    assert len(annotation["keypoints"]) == 63 and annotation["num_keypoints"] > 0
    assert dataset.coco.dataset["annotations"][0].get("keypoints_21") == annotation["keypoints"]
    metrics = oracle_evaluation(
        tmp_path, monkeypatch, "humanart", "humanart21", humanart / "test_humanart.json", humanart
    )
    assert metrics["AP"] >= 0.7  # the codec's own ceiling on these 3 drawn images: 0.777


@pytest.mark.skipif(not (SAMPLES / "posetrack18").is_dir(), reason="shared samples not present")
def test_boxes_without_areas_get_the_crowdpose_fraction():
    posetrack = SAMPLES / "posetrack18"
    ann = posetrack / "annotations" / "test_posetrack18_val.json"
    dataset = open_keypoint_dataset("posetrack18", ann, posetrack)
    truth = dataset.scoring_ground_truth()
    for annotation in truth.dataset["annotations"]:
        _, _, width, height = annotation["bbox"]
        assert annotation["area"] == pytest.approx(width * height * 0.53)
    coco = open_keypoint_dataset(
        "coco", SAMPLES.parent / "coco_sample" / "person_keypoints_sample.json",
        SAMPLES.parent / "coco_sample",
    )  # fmt: skip
    assert coco.scoring_ground_truth() is coco.coco  # COCO's own areas, untouched
