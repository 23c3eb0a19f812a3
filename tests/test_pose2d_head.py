"""XNect 2D head: shapes for every SelecSLS config, gradients, odd sizes, registry, skeletons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selecsls.backbones import STAGE_TABLES
from selecsls.backbones.fusion import fuse_bn
from selecsls.datasets.synthetic_body import JOINT_NAMES
from selecsls.heads import HEADS, build_model
from selecsls.heads import skeletons as sk
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.xnect import XNect2DHead


def pose_model(name: str, **kwargs):
    return build_model({"backbone": name, "heads": {"xnect2d": kwargs}})


@pytest.mark.parametrize("name", sorted(STAGE_TABLES))
def test_shapes_and_gradients_every_config(name):
    torch.manual_seed(0)
    model = pose_model(name)
    images = torch.randn(2, 3, 32, 48)
    out = model(images)
    assert set(out) == {"heatmaps", "pafs"}
    assert out["heatmaps"].shape == (2, 19, 4, 6)
    assert out["pafs"].shape == (2, 38, 4, 6)
    (out["heatmaps"].square().mean() + out["pafs"].square().mean()).backward()
    head = model.heads["xnect2d"]
    assert head.trunk[0][0].weight.grad.abs().sum() > 0
    assert head.predictor[-1].weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0  # reaches the backbone


@pytest.mark.parametrize("height,width", [(70, 100), (33, 17), (64, 80)])
def test_odd_input_sizes_match_codec(height, width):
    model = pose_model("selecsls42").eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, height, width))
    w, h = Pose2DCodec().map_size((width, height))
    assert out["heatmaps"].shape[-2:] == (h, w)
    assert (h, w) == (2 * -(-height // 16), 2 * -(-width // 16))


def test_expose_feature_and_fusion():
    model = pose_model("selecsls60", expose_feature=True).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
        fused = fuse_bn(model)(images)
    assert out["feature2d"].shape == (1, 128, 8, 8)
    for key in out:
        torch.testing.assert_close(fused[key], out[key], atol=1e-4, rtol=1e-4)


def test_registry_and_bad_arguments():
    assert HEADS["xnect2d"] is XNect2DHead
    with pytest.raises(ValueError, match="xnect2d"):
        build_model({"backbone": "selecsls42", "heads": {"xnect2d": {"no_such_key": 1}}})
    with pytest.raises(ValueError, match="stride32"):
        pose_model("selecsls42", in_feature="stride32")


def test_takes_width_from_declared_features():
    from selecsls.backbones import FeatureSpec

    head = XNect2DHead({"stride16": FeatureSpec(100, 16)})
    out = head({"stride16": torch.randn(1, 100, 3, 5)})
    assert out["pafs"].shape == (1, 38, 6, 10)


def test_skeleton_permutations_are_mirror_involutions():
    for names, flip in [
        (sk.COCO17_NAMES, sk.COCO17_FLIP),
        (sk.OPENPOSE18_NAMES, sk.OPENPOSE18_FLIP),
        (sk.JOINTS21_NAMES, sk.JOINTS21_FLIP),
    ]:
        assert sorted(flip) == list(range(len(names)))
        assert all(flip[flip[i]] == i for i in range(len(names)))
        for i, j in enumerate(flip):
            assert names[i].replace("left", "right") == names[j].replace("left", "right")
            assert (i == j) == ("left" not in names[i] and "right" not in names[i])
    assert sk.COCO17_FLIP[sk.COCO17_NAMES.index("left_wrist")] == 10


def test_openpose_mapping_and_neck():
    assert len(sk.LIMBS18) == 19 and len(set(sk.LIMBS18)) == 19
    coco = np.zeros((1, 17, 3), np.float32)
    coco[0, 5] = (10, 20, 2)  # left shoulder
    coco[0, 6] = (30, 40, 1)  # right shoulder
    coco[0, 0] = (5, 6, 2)
    op = sk.coco17_to_openpose18(coco)
    np.testing.assert_allclose(op[0, sk.NECK], (20, 30, 1))
    np.testing.assert_allclose(op[0, sk.OPENPOSE18_NAMES.index("left_shoulder")], (10, 20, 2))
    np.testing.assert_allclose(sk.openpose18_to_coco17(op), coco)
    coco[0, 6, 2] = 0  # one shoulder unlabelled: no neck
    assert sk.coco17_to_openpose18(coco)[0, sk.NECK, 2] == 0
    # limbs map onto limbs under a flip
    for i, (a, b) in enumerate(sk.LIMBS18):
        fa, fb = sk.LIMBS18[sk.LIMBS18_FLIP[i]]
        assert (fa, fb) == (sk.OPENPOSE18_FLIP[a], sk.OPENPOSE18_FLIP[b])


def test_joints21_tree_and_generator_agree():
    assert JOINT_NAMES == sk.JOINTS21_NAMES  # datasets cannot import heads: keep them equal
    parents = sk.JOINTS21_PARENTS
    assert parents.count(-1) == 1 and parents[sk.JOINTS21_ROOT] == -1
    for joint in range(21):  # every joint reaches the root
        seen = 0
        while joint != sk.JOINTS21_ROOT:
            joint, seen = parents[joint], seen + 1
            assert seen < 21
    assert sk.JOINTS21_NEIGHBOURS[sk.JOINTS21_NAMES.index("left_elbow")] == (5, 7)
    assert len(sk.STAGE2_JOINTS) == 14


def line_person(x: tuple[float, float], y: tuple[float, float]) -> np.ndarray:
    """One person (1, 17, 3): visible keypoints spread along a line from (x0, y0) to (x1, y1)."""
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, 0] = np.linspace(*x, 17)
    person[0, :, 1] = np.linspace(*y, 17)
    person[0, :, 2] = 2
    return person


def encoded_with_random_outputs(person: np.ndarray, size: tuple[int, int]) -> tuple[dict, dict]:
    """(targets, outputs): the codec's batch-of-one targets and random maps of their shapes."""
    targets = {k: torch.from_numpy(v)[None] for k, v in Pose2DCodec().encode(person, size).items()}
    return targets, {k: torch.rand_like(targets[k]) for k in ("heatmaps", "pafs")}


def test_masked_l2_loss_and_a_few_steps_lower_it():
    from selecsls.heads.pose2d.loss import pose2d_losses

    torch.manual_seed(0)
    codec = Pose2DCodec()
    person = line_person((12, 50), (10, 54))
    ignore = np.zeros((64, 64), np.uint8)
    ignore[:, 48:] = 1
    targets = {
        k: torch.from_numpy(v)[None] for k, v in codec.encode(person, (64, 64), ignore).items()
    }
    model = pose_model("selecsls42")
    outputs = model(torch.randn(1, 3, 64, 64))
    losses = pose2d_losses(outputs, targets)
    assert set(losses) == {"heatmap_loss", "paf_loss", "loss"} and losses["loss"] > 0
    # masked cells do not count: changing the prediction there changes nothing
    changed = {k: v.detach().clone() for k, v in outputs.items()}
    changed["heatmaps"][..., 6:] += 5.0
    base = pose2d_losses({k: v.detach() for k, v in outputs.items()}, targets)["loss"]
    torch.testing.assert_close(pose2d_losses(changed, targets)["loss"], base)
    with pytest.raises(ValueError, match="differ"):
        pose2d_losses({"heatmaps": changed["heatmaps"][..., :4], "pafs": changed["pafs"]}, targets)
    # the head can fit the targets: a few Adam steps on the head (fixed features) lower the loss
    with torch.no_grad():
        features = model.backbone(torch.randn(2, 3, 64, 64))
    head = model.heads["xnect2d"]
    targets2 = {k: v.expand(2, *v.shape[1:]) for k, v in targets.items()}
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        loss = pose2d_losses(head(features), targets2)["loss"]
        history.append(loss.item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert history[-1] < history[0]


def test_foreground_weight_scales_cells_near_keypoints():
    from selecsls.heads.pose2d.loss import pose2d_losses

    torch.manual_seed(0)
    # a person in the top-left corner of a 128x128 input
    targets, outputs = encoded_with_random_outputs(line_person((8, 30), (6, 36)), (128, 128))
    plain = pose2d_losses(outputs, targets)
    weighted = pose2d_losses(outputs, targets, heatmap_fg_weight=4.0)
    heatmaps = targets["heatmaps"]
    closeness = heatmaps.clone()
    closeness[:, -1] = 1 - heatmaps[:, -1]  # background: near any keypoint
    error = (outputs["heatmaps"] - heatmaps).square() * targets["mask"]
    expected = (error * (1 + 4.0 * closeness)).sum() / 2
    torch.testing.assert_close(weighted["heatmap_loss"], expected)
    assert weighted["heatmap_loss"] > plain["heatmap_loss"]
    torch.testing.assert_close(weighted["paf_loss"], plain["paf_loss"])  # PAFs unchanged
    # far from every keypoint (closeness 0) a cell weighs 1, as without the option
    far = closeness.amax(1, keepdim=True) == 0
    assert far.any()
    moved = {k: v.clone() for k, v in outputs.items()}
    moved["heatmaps"] = torch.where(far, outputs["heatmaps"] + 1.0, outputs["heatmaps"])
    delta_plain = pose2d_losses(moved, targets)["loss"] - plain["loss"]
    delta_weighted = pose2d_losses(moved, targets, heatmap_fg_weight=4.0)["loss"] - weighted["loss"]
    torch.testing.assert_close(delta_weighted, delta_plain)


def test_paf_foreground_weight_scales_cells_inside_limbs():
    from selecsls.heads.pose2d.loss import limb_closeness, pose2d_losses

    torch.manual_seed(0)
    targets, outputs = encoded_with_random_outputs(line_person((20, 100), (10, 110)), (128, 128))
    plain = pose2d_losses(outputs, targets)
    weighted = pose2d_losses(outputs, targets, paf_fg_weight=3.0)
    closeness = limb_closeness(targets["pafs"])
    # both channels of a limb share its band; inside it a unit vector: closeness 1
    assert torch.equal(closeness[:, 0::2], closeness[:, 1::2])
    assert closeness.max() == pytest.approx(1.0, abs=1e-5) and (closeness == 0).any()
    error = (outputs["pafs"] - targets["pafs"]).square() * targets["mask"]
    torch.testing.assert_close(weighted["paf_loss"], (error * (1 + 3.0 * closeness)).sum() / 2)
    torch.testing.assert_close(weighted["heatmap_loss"], plain["heatmap_loss"])
