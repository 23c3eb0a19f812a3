"""Skeletons as data: every catalogued skeleton is consistent, COCO's keeps its earlier facts, and
the codec, head, loss and flip test follow the skeleton they are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selecsls.backbones import FeatureSpec
from selecsls.datasets.coco import CocoKeypoints
from selecsls.heads import build_model
from selecsls.heads.flip_test import mirror_back, predict_with_flip, skeleton_of
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.loss import keypoint_masks, pose2d_losses
from selecsls.heads.pose2d.metrics import evaluate_keypoints, people_to_results
from selecsls.heads.pose2d.xnect import XNect2DHead
from selecsls.heads.skeletons import (
    COCO17,
    COCO17_FLIP,
    COCO17_NAMES,
    LIMBS18,
    LIMBS18_FLIP,
    OPENPOSE18_FLIP,
    SKELETONS,
    Skeleton,
    get_skeleton,
)

# A standing person facing the camera (its left on the image's right), 192 x 256 pixels, with
# every name any catalogued skeleton uses.
STANDING = {
    "head_top": (96, 20), "nose": (96, 42), "left_eye": (103, 36), "right_eye": (89, 36),
    "left_ear": (110, 40), "right_ear": (82, 40), "head_bottom": (96, 56),
    "upper_neck": (96, 62), "neck": (96, 70), "thorax": (96, 74),
    "left_shoulder": (124, 74), "right_shoulder": (68, 74), "left_elbow": (136, 110),
    "right_elbow": (56, 110), "left_wrist": (142, 144), "right_wrist": (50, 144),
    "left_finger": (144, 158), "right_finger": (48, 158), "pelvis": (96, 140),
    "left_hip": (112, 142), "right_hip": (80, 142), "left_knee": (116, 190),
    "right_knee": (76, 190), "left_ankle": (118, 234), "right_ankle": (74, 234),
    "left_toe": (126, 244), "right_toe": (66, 244),
}  # fmt: skip


def standing_person(skeleton: Skeleton) -> np.ndarray:
    """(1, K, 3) the standing person in the skeleton's annotation order, all visible."""
    points = [(*STANDING[name], 2) for name in skeleton.keypoints]
    return np.array([points], np.float32)


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_samples"
COUNTS = {
    "coco17": (17, 18, 19),
    "crowdpose14": (14, 14, 13),
    "mpii16": (16, 16, 15),
    "aic14": (14, 14, 13),
    "posetrack18": (17, 18, 17),
    "humanart21": (21, 22, 27),
}


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_catalogued_skeleton_is_consistent(name):
    skeleton = SKELETONS[name]
    keypoints, model_keypoints, limbs = COUNTS[name]
    assert (skeleton.num_keypoints, skeleton.num_model_keypoints) == (keypoints, model_keypoints)
    assert len(skeleton.limbs) == limbs and skeleton.num_pafs == 2 * limbs
    assert skeleton.num_heatmaps == model_keypoints + 1
    for flip in (skeleton.flip, skeleton.model_flip, skeleton.limb_flip):
        assert sorted(flip) == list(range(len(flip)))  # a permutation ...
        assert all(flip[flip[i]] == i for i in range(len(flip)))  # ... that undoes itself
    # a left keypoint's mirror is the right one of the same part
    for i, n in enumerate(skeleton.keypoints):
        mirrored = skeleton.keypoints[skeleton.flip[i]]
        assert mirrored == n.replace("left_", "right_") if n.startswith("left_") else True
    # every annotated keypoint survives to_model -> from_model
    rng = np.random.default_rng(0)
    people = rng.uniform(1, 100, (3, keypoints, 3)).astype(np.float32)
    assert np.array_equal(skeleton.from_model(skeleton.to_model(people)), people)
    assert all(0 <= a < keypoints and 0 <= b < keypoints for a, b in skeleton.draw_edges)


def test_coco_skeleton_keeps_the_openpose_facts():
    assert COCO17.limb_indices == LIMBS18
    assert COCO17.flip == COCO17_FLIP and COCO17.model_flip == OPENPOSE18_FLIP
    assert COCO17.limb_flip == LIMBS18_FLIP
    people = np.zeros((1, 17, 3), np.float32)
    left, right = COCO17_NAMES.index("left_shoulder"), COCO17_NAMES.index("right_shoulder")
    people[0, left], people[0, right] = (10, 20, 2), (30, 40, 1)
    neck = COCO17.to_model(people)[0, COCO17.model_order.index("neck")]
    assert neck.tolist() == [20.0, 30.0, 1.0]  # midpoint, the smaller visibility
    people[0, right, 2] = 0
    assert COCO17.to_model(people)[0, COCO17.model_order.index("neck")].tolist() == [0, 0, 0]


def test_bad_skeletons_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="no mirror"):
        Skeleton("x", ("left_hand", "nose"), (0.1, 0.1), (("nose", "left_hand"),))
    with pytest.raises(ValueError, match="starts off the walk"):
        Skeleton("x", ("a", "b", "c", "d"), (0.1,) * 4, (("a", "b"), ("c", "d")))
    with pytest.raises(ValueError, match="on no limb"):
        Skeleton("x", ("a", "b", "c"), (0.1,) * 3, (("a", "b"),))
    with pytest.raises(ValueError, match="2 sigmas for 3"):
        Skeleton("x", ("a", "b", "c"), (0.1,) * 2, (("a", "b"), ("b", "c")))
    with pytest.raises(ValueError, match="unknown skeleton 'coco18'.*crowdpose14"):
        get_skeleton("coco18")


@pytest.mark.parametrize("name", ["crowdpose14", "humanart21", "mpii16"])
def test_head_and_codec_channels_follow_the_skeleton(name):
    skeleton = SKELETONS[name]
    head = XNect2DHead({"stride16": FeatureSpec(64, 16)}, skeleton=name)
    outputs = head({"stride16": torch.zeros(2, 64, 16, 12)})  # a 192 x 256 input
    assert outputs["heatmaps"].shape == (2, skeleton.num_heatmaps, 32, 24)
    assert outputs["pafs"].shape == (2, skeleton.num_pafs, 32, 24)
    codec = Pose2DCodec(skeleton=name)
    person = standing_person(skeleton)
    targets = codec.encode(person, (192, 256))
    assert targets["heatmaps"].shape[0] == skeleton.num_heatmaps
    assert targets["pafs"].shape[0] == skeleton.num_pafs
    losses = pose2d_losses(
        outputs, {k: torch.from_numpy(v)[None].repeat(2, 1, 1, 1) for k, v in targets.items()}
    )
    assert torch.isfinite(losses["loss"])
    decoded, _ = codec.decode(targets["heatmaps"], targets["pafs"])
    assert decoded.shape == (1, skeleton.num_keypoints, 3)
    assert np.abs(decoded[0, :, :2] - person[0, :, :2]).max() < 0.5
    with pytest.raises(ValueError, match="skeleton coco17 has 19 and 38"):
        Pose2DCodec().decode(targets["heatmaps"], targets["pafs"])


def test_unlabelled_types_are_masked_in_the_skeletons_own_channels():
    skeleton = SKELETONS["crowdpose14"]
    codec = Pose2DCodec(skeleton="crowdpose14")
    points = np.array([[[20, 20, 2], [60, 50, 2]]], np.float32)
    unlabelled = np.zeros((1, 14), bool)
    unlabelled[0, skeleton.keypoints.index("head_top")] = True
    masks = keypoint_masks(points, unlabelled, (96, 64), codec)
    head = skeleton.model_order.index("head_top")
    assert masks["heatmap_mask"].shape == (15, 8, 12)
    assert masks["heatmap_mask"][head].min() == 0 and masks["heatmap_mask"][0].min() == 1
    limb = skeleton.limbs.index(("neck", "head_top"))
    assert masks["paf_mask"][2 * limb].min() == 0 and masks["paf_mask"][0].min() == 1


def test_flip_test_uses_the_models_skeleton():
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {"skeleton": "aic14"}}})
    assert skeleton_of(model) == "aic14"
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        averaged = predict_with_flip(model, images)
        direct = model(images)
        mirrored = mirror_back(model(torch.flip(images, [3])), "aic14")
    for key in ("heatmaps", "pafs"):
        expected = (direct[key] + mirrored[key]) / 2
        assert torch.allclose(averaged[key], expected, atol=1e-5)
    with pytest.raises(ValueError, match="15 heatmap channels.*coco17 has 19"):
        mirror_back({"heatmaps": torch.zeros(1, 15, 2, 2), "pafs": torch.zeros(1, 26, 2, 2)})


CROWDPOSE = SAMPLES / "crowdpose" / "test_crowdpose.json"


@pytest.mark.skipif(not CROWDPOSE.is_file(), reason="shared CrowdPose sample not present")
def test_crowdpose_round_trip_with_its_own_skeleton_and_sigmas():
    codec = Pose2DCodec(skeleton="crowdpose14")
    dataset = CocoKeypoints(CROWDPOSE, CROWDPOSE.parent, (512, 512), encoder=codec.encode)
    results = []
    for index in range(len(dataset)):
        sample = dataset[index]
        found = codec.decode(sample["heatmaps"], sample["pafs"], sample["transform"].numpy())
        results += people_to_results(sample["image_id"], *found)
    for annotation in dataset.coco.dataset["annotations"]:  # CrowdPose gives boxes, no areas
        annotation.setdefault("area", annotation["bbox"][2] * annotation["bbox"][3])
    sigmas = codec.keypoint_skeleton.sigma_array
    stats = evaluate_keypoints(dataset.coco, results, sigmas=sigmas, verbose=False)
    assert stats["AP"] >= 0.93, stats  # measured 0.951 on the two sample images


def test_annotations_map_by_name_and_leave_the_rest_unlabelled():
    from selecsls.heads.skeletons import annotation_map

    crowd = SKELETONS["crowdpose14"]
    mapping = annotation_map("crowdpose14", "coco17")
    person = standing_person(crowd)
    index = np.array(mapping)
    mapped = person[:, np.maximum(index, 0)] * (index >= 0)[:, None]  # as the dataset maps
    assert mapped.shape == (1, 17, 3)
    for k, name in enumerate(COCO17_NAMES):
        if name in crowd.keypoints:  # the 12 limb joints carry over unchanged
            assert mapped[0, k].tolist() == person[0, crowd.keypoints.index(name)].tolist()
        else:  # the face: unlabelled, (0, 0, 0), and listed as such
            assert mapping[k] == -1 and mapped[0, k].tolist() == [0, 0, 0]
    assert sum(i >= 0 for i in mapping) == 12
    # MPII's thorax stands for the neck of skeletons that annotate one
    to_crowd = annotation_map("mpii16", "crowdpose14")
    assert to_crowd[crowd.keypoints.index("neck")] == SKELETONS["mpii16"].keypoints.index("thorax")
    assert annotation_map("coco17", "coco17") == tuple(range(17))
