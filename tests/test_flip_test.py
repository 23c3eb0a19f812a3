"""Flip testing (heads/flip_test.py): mirrored maps are mapped back channel for channel, and the
flip-tested prediction of a mirror image is the mirror of the flip-tested prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selecsls.datasets.synthetic_people import generate
from selecsls.heads import build_model
from selecsls.heads.flip_test import mirror_back, predict, predict_with_flip
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.skeletons import COCO17_FLIP, JOINTS21_FLIP

SIZE = (96, 64)  # W x H, multiples of 16: 12 x 8 cells


def synthetic_people(tmp_path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The people of a generated image: COCO keypoints (P, 17, 3) and 21-joint 2D (P, 21, 3)
    in input pixels, 3D joints (P, 21, 3) mm, rescaled from the generator's 192x128 to SIZE."""
    generate(tmp_path, 4, seed=3, size=(192, 128), max_people=2)
    annotations = json.loads((tmp_path / "annotations.json").read_text())["annotations"]
    by_image: dict[int, list] = {}
    for a in annotations:
        if a["num_keypoints"] > 0:
            by_image.setdefault(a["image_id"], []).append(a)
    people = max(by_image.values(), key=len)
    keypoints = np.array([a["keypoints"] for a in people], np.float32).reshape(-1, 17, 3)
    keypoints[..., :2] = (keypoints[..., :2] + 0.5) / 2 - 0.5
    joints3d = np.array([a["keypoints_3d"] for a in people], np.float64).reshape(-1, 21, 3)
    points2d = np.zeros_like(joints3d, np.float32)
    points2d[..., :2] = 10 + np.random.default_rng(0).uniform(0, 70, (len(people), 21, 2))
    points2d[..., 2] = 1
    return keypoints, points2d, joints3d


def mirror_points(points: np.ndarray, flip: tuple[int, ...]) -> np.ndarray:
    """(P, K, 3) input-pixel points of an image -> those of its mirror image (left/right swap)."""
    mirrored = points[:, list(flip)].copy()
    mirrored[..., 0] = np.where(mirrored[..., 2] > 0, SIZE[0] - 1 - mirrored[..., 0], 0)
    return mirrored


def as_batch(maps: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v)[None] for k, v in maps.items()}


def test_mirrored_2d_targets_map_back_to_the_originals(tmp_path):
    keypoints, _, _ = synthetic_people(tmp_path)
    codec = Pose2DCodec()
    original = codec.encode(keypoints, SIZE)
    mirrored = codec.encode(mirror_points(keypoints, COCO17_FLIP), SIZE)
    back = mirror_back(as_batch({k: mirrored[k] for k in ("heatmaps", "pafs")}))
    assert original["pafs"].any() and original["heatmaps"][:-1].max() > 0.9
    for key in ("heatmaps", "pafs"):
        assert torch.allclose(back[key][0], torch.from_numpy(original[key]), atol=1e-4), key


def test_mirrored_location_maps_map_back_to_the_originals(tmp_path):
    _, points2d, joints3d = synthetic_people(tmp_path)
    codec = Pose3DCodec()
    joints3d, points2d = joints3d[:1], points2d[:1]  # one person: no ownership ties
    original = codec.encode(joints3d, points2d, SIZE)
    mirrored_joints = joints3d[:, list(JOINTS21_FLIP)] * np.array([-1.0, 1.0, 1.0])
    mirrored = codec.encode(mirrored_joints, mirror_points(points2d, JOINTS21_FLIP), SIZE)
    back = mirror_back(as_batch({"locmaps": mirrored["locmaps"]}))["locmaps"][0]
    assert np.abs(original["locmaps"]).max() > 0.1
    assert torch.allclose(back, torch.from_numpy(original["locmaps"]), atol=1e-5)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = {"backbone": "selecsls42b", "heads": {"xnect2d": {}, "xnect3d": {}}}
    return build_model(config).eval()


def test_flip_tested_maps_are_mirror_symmetric(model):
    images = torch.randn(2, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        plain = predict(model, images)
        both = predict_with_flip(model, images)
        of_mirror = predict_with_flip(model, torch.flip(images, [3]))
    assert set(both) == {"heatmaps", "pafs", "locmaps"}
    for key, maps in mirror_back(of_mirror).items():
        assert maps.shape == plain[key].shape
        assert torch.allclose(maps, both[key], atol=1e-4), key
        assert not torch.allclose(both[key], plain[key], atol=1e-3), key  # it did average


def test_inputs_narrower_than_the_maps_are_padded_on_the_right(model):
    images = torch.randn(1, 3, 64, 88)  # 88 px: the maps are 12 cells (96 px) wide
    padded = torch.nn.functional.pad(images, (0, 8))
    with torch.no_grad():
        plain, both = predict(model, images), predict(model, images, flip=True)
        plain_padded, both_padded = predict(model, padded), predict(model, padded, flip=True)
    for key in plain:
        assert both[key].shape == plain[key].shape
        # the mirrored half of the average is the padded image's mirror in both cases
        mirrored_half = both[key] - plain[key] / 2
        assert torch.allclose(mirrored_half, both_padded[key] - plain_padded[key] / 2, atol=1e-4)


def test_unknown_outputs_are_refused():
    with pytest.raises(ValueError, match="no mirroring rule for the output 'logits'"):
        mirror_back({"logits": torch.zeros(1, 10, 1, 1)})
