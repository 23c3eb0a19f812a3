"""Evaluation at the bottom-up references' geometry: each val image scaled (aspect kept) so its
short side or height is the evaluation size, padded only to the size divisor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_eval_pose2d import OracleModel, evaluate

from selecsls.datasets.augment import PAD_VALUE, EvalResize, EvalScale
from selecsls.datasets.coco import CocoKeypoints, collate_pose
from selecsls.datasets.synthetic_people import generate
from selecsls.heads import build_model, save_model
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.tools.engine.tasks.pose2d import eval_augment
from selecsls.tools.evaluation import pose2d as eval_pose2d


def test_scaled_sizes_keep_the_aspect_and_pad_to_16():
    image = np.zeros((480, 640, 3), np.uint8)
    no_people = np.zeros((0, 17, 3), np.float32)
    canvas, _, mask, matrix = EvalScale(368)(image, no_people, np.zeros((480, 640), np.uint8))
    assert canvas.shape == (368, 496, 3) and mask.shape == (368, 496)  # 640 * 368/480 = 491
    assert matrix[0, 0] == pytest.approx(368 / 480)
    assert (canvas[:, 491:] == PAD_VALUE).all() and (canvas[:, 490] != PAD_VALUE).any()
    tall = EvalScale(368, side="height").input_size_for(480, 640)
    assert tall == (288, 368)  # the height is the size even when it is the long side
    assert EvalScale(368).input_size_for(480, 640) == (368, 496)
    with pytest.raises(ValueError, match="side must be"):
        EvalScale(368, side="long")


def test_an_image_of_the_evaluation_size_is_treated_as_by_the_letterbox(tmp_path):
    generate(tmp_path / "val", 3, seed=4, size=(192, 128), max_people=3)
    ann, images = tmp_path / "val" / "annotations.json", tmp_path / "val" / "images"
    fixed = CocoKeypoints(ann, images, (192, 128), augment=EvalResize((192, 128)))
    scaled = CocoKeypoints(ann, images, (192, 128), augment=EvalScale(128, side="height"))
    for a, b in zip(fixed, scaled):
        for key in ("image", "keypoints", "transform", "ignore_mask"):
            assert torch.equal(a[key], b[key]), key  # same pixels, so the same detections


def test_mixed_sizes_are_padded_bottom_right_in_a_batch():
    small = {"image": torch.full((3, 32, 48), 7, dtype=torch.uint8), "keypoints": torch.zeros(0)}
    large = {"image": torch.full((3, 48, 32), 9, dtype=torch.uint8), "keypoints": torch.zeros(0)}
    for sample in (small, large):
        sample["ignore_mask"] = torch.ones(sample["image"].shape[1:], dtype=torch.uint8)
    batch = collate_pose([small, large])
    assert batch["image"].shape == (2, 3, 48, 48)
    assert (batch["image"][0, :, :32, :48] == 7).all()
    assert batch["image"][0, :, 32:, :].tolist() == [
        [[v] * 48 for _ in range(16)] for v in PAD_VALUE
    ]
    assert batch["ignore_mask"][1, :, 32:].sum() == 0 and batch["ignore_mask"][1, :, :32].all()


def test_eval_section_picks_the_geometry():
    assert type(eval_augment({}, (368, 368))) is EvalResize
    scaled = eval_augment({"geometry": "short_side", "size": 256}, (368, 368))
    assert isinstance(scaled, EvalScale) and (scaled.size, scaled.side) == (256, "short")
    assert eval_augment({"geometry": "height"}, (368, 320)).size == 320  # default: input height
    with pytest.raises(ValueError, match="eval.size"):
        eval_augment({"geometry": "height", "size": 4}, (368, 320))


def test_scaled_evaluation_maps_back_to_original_pixels(tmp_path, monkeypatch, capsys):
    # 200x150 images scaled to a 160 short side: a (213 -> 224) x 160 input each, no letterbox
    generate(tmp_path / "val", 6, seed=5, size=(200, 150), max_people=3)
    ann, images = tmp_path / "val" / "annotations.json", tmp_path / "val" / "images"
    codec, augment = Pose2DCodec(), EvalScale(160)
    dataset = CocoKeypoints(ann, images, (160, 160), augment=augment)
    targets = [codec.encode(s["keypoints"].numpy(), (224, 160)) for s in dataset]
    assert dataset[0]["image"].shape == (3, 160, 224)
    monkeypatch.setattr(eval_pose2d, "load_weights", lambda args, ckpt: OracleModel(targets))
    checkpoint = tmp_path / "pose.pt"
    save_model(build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}}), checkpoint)
    metrics = tmp_path / "m.json"
    argv = [str(checkpoint), "--ann", str(ann), "--images", str(images), "--json", str(metrics)]
    argv += ["--geometry", "short_side", "--eval-size", "160", "--batch-size", "3"]
    assert evaluate(argv) == 0
    assert json.loads(metrics.read_text())["AP"] >= 0.9
