"""Stage I (2D + 3D branch) head: shapes, gradients, input widths, 2D-checkpoint init."""

from __future__ import annotations

import pytest
import torch

from selecsls.backbones import FeatureSpec
from selecsls.heads import HEADS, build_model, save_model
from selecsls.heads.pose3d.xnect import XNect3DHead, stage1_state_from_2d
from selecsls.heads.weights import read_model_file


@pytest.fixture(autouse=True)
def one_thread():
    """Small inputs on shared, busy cores: one thread beats two fighting each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("backbone", ["selecsls42b", "selecsls60"])
def test_outputs_and_gradients(backbone):
    torch.manual_seed(0)
    model = build_model({"backbone": backbone, "heads": {"xnect3d": {}}})
    images = torch.randn(2, 3, 48, 64)
    out = model(images)
    assert set(out) == {"heatmaps", "pafs", "locmaps"}
    assert out["heatmaps"].shape == (2, 19, 6, 8) and out["pafs"].shape == (2, 38, 6, 8)
    assert out["locmaps"].shape == (2, 63, 6, 8)
    head = model.heads["xnect3d"]
    # the 3D branch is conditioned on the 2D branch's feature: gradients reach the 2D trunk
    out["locmaps"].pow(2).sum().backward()
    for part in (head.trunk3d, head.predictor3d, head.trunk, model.backbone):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in head.predictor.parameters())


def test_input_width_from_declaration_and_odd_sizes():
    head = XNect3DHead({"stride16": FeatureSpec(100, 16)}, expose_feature=True).eval()
    out = head({"stride16": torch.randn(1, 100, 3, 5)})
    assert out["locmaps"].shape == (1, 63, 6, 10) and out["feature2d"].shape == (1, 128, 6, 10)
    with pytest.raises(ValueError, match="stride16"):
        XNect3DHead({"stride8": FeatureSpec(64, 8)})
    assert HEADS["xnect3d"] is XNect3DHead


def test_2d_checkpoint_initialises_stage1(tmp_path):
    torch.manual_seed(1)
    model2d = build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}}).eval()
    path = save_model(model2d, tmp_path / "pose2d.pth")
    state, _ = read_model_file(path)
    model3d = build_model({"backbone": "selecsls42b", "heads": {"xnect3d": {}}}).eval()
    result = model3d.load_state_dict(stage1_state_from_2d(state), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(
        k.startswith(("heads.xnect3d.trunk3d.", "heads.xnect3d.predictor3d."))
        for k in result.missing_keys
    )
    images = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        a, b = model2d(images), model3d(images)
    torch.testing.assert_close(a["heatmaps"], b["heatmaps"])
    torch.testing.assert_close(a["pafs"], b["pafs"])


def test_fused_layout_builds_and_runs():
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect3d": {}}, "fused": True})
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 32, 32))
    assert out["locmaps"].shape == (1, 63, 4, 4)


def test_one_training_step_on_a_3d_batch():
    """Dataset -> collate -> Stage I model -> masked location-map loss -> gradients."""
    from pathlib import Path

    from selecsls.datasets.mix3d import collate_pose3d
    from selecsls.datasets.muco import Multi3DDataset
    from selecsls.heads.pose2d.codec import Pose2DCodec
    from selecsls.heads.pose3d.codec import Pose3DCodec, locmap_loss
    from selecsls.heads.skeletons import COCO17_FROM_JOINTS21

    fixture = Path(__file__).resolve().parent / "data" / "muco_tiny"
    dataset = Multi3DDataset(
        fixture / "annotations.json",
        fixture / "images",
        (64, 48),
        encoder=Pose2DCodec().encode,
        encoder3d=Pose3DCodec().encode,
        coco_from_joints=COCO17_FROM_JOINTS21,
    )
    batch = collate_pose3d([dataset[0], dataset[1]])
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect3d": {}}})
    out = model(batch["image"])
    assert out["locmaps"].shape == batch["locmaps"].shape
    loss = locmap_loss(out["locmaps"], batch["locmaps"], batch["locmap_weights"])
    loss.backward()
    assert loss > 0 and model.heads["xnect3d"].predictor3d[-1].weight.grad.abs().sum() > 0


def test_a_few_steps_fit_the_location_maps():
    """The 3D branch can learn: on fixed backbone features and fixed targets, in fp32, 20 Adam
    steps on the head halve the location-map loss (what the Stage I training test used to
    assert after 6 bf16 steps of a whole run, which moved differently on every CPU)."""
    from selecsls.heads.pose3d.codec import locmap_loss

    torch.manual_seed(0)
    head = XNect3DHead({"stride16": FeatureSpec(64, 16)})
    features = {"stride16": torch.randn(2, 64, 4, 4)}
    target = torch.randn(2, 63, 8, 8) * 0.3
    weights = torch.zeros(2, 21, 8, 8)
    weights[:, :, 2:6, 2:6] = 1.0  # a supervised neighbourhood per joint, as the codec makes
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    history = []
    for _ in range(20):
        loss = locmap_loss(head(features)["locmaps"], target, weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(float(loss))
    assert history[-1] < 0.5 * history[0], history
