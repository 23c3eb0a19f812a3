"""The centre + offset 2D head: shapes and gradients for every SelecSLS configuration, widths,
odd sizes, BN fusion and exact pruning, a fit of fixed targets in fp32, the registry, and the
config key that picks it (checkpoints record it; eval, flip test, demo and export take it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from selecsls.backbones import STAGE_TABLES, FeatureSpec
from selecsls.backbones.fusion import fuse_bn
from selecsls.heads import HEADS, build_model, load_model, save_model
from selecsls.heads.flip_test import predict_with_flip
from selecsls.heads.pose2d.centre.codec import CentreCodec
from selecsls.heads.pose2d.centre.head import Centre2DHead
from selecsls.heads.pose2d.centre.loss import centre_losses
from selecsls.heads.pose2d.registry import get_head2d, head_of, make_codec2d
from selecsls.heads.prune import FilledHead, prune_model
from selecsls.tools.bench.prune import zero_gammas
from selecsls.tools.realtime.runtime import PoseEstimator, TorchRunner, codec_from


def centre_model(name: str = "selecsls42b", width: float = 1.0, **kwargs):
    config = {"backbone": name, "backbone_width": width, "heads": {"centre2d": kwargs}}
    return build_model(config)


@pytest.mark.parametrize("name", sorted(STAGE_TABLES))
def test_shapes_and_gradients_every_config(name):
    torch.manual_seed(0)
    model = centre_model(name)
    out = model(torch.randn(2, 3, 32, 48))
    assert set(out) == {"heatmaps", "offsets"}
    assert out["heatmaps"].shape == (2, 19, 4, 6) and out["offsets"].shape == (2, 36, 4, 6)
    (out["heatmaps"].square().mean() + out["offsets"].mean()).backward()  # offsets start at 0
    head = model.heads["centre2d"]
    assert head.trunk[0][0].weight.grad.abs().sum() > 0
    assert head.lateral[0].weight.grad.abs().sum() > 0  # the stride-8 map is read
    assert head.offset_branch[-1].weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("width, fuse", [(0.5, "stride8"), (0.25, None), (1.0, None)])
@pytest.mark.parametrize("height, width_px", [(70, 100), (33, 17)])
def test_widths_odd_sizes_and_no_fusion_match_the_codec(width, fuse, height, width_px):
    model = centre_model("selecsls60", width, fuse_feature=fuse).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, height, width_px))
    w, h = CentreCodec().map_size((width_px, height))
    assert out["heatmaps"].shape[-2:] == (h, w) == out["offsets"].shape[-2:]


def test_skeleton_sets_the_channels_and_expose_feature():
    model = centre_model(skeleton="crowdpose14", expose_feature=True).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    # CrowdPose-14 has no derived model keypoint: 14 heatmaps + the centre, 28 offsets
    assert out["heatmaps"].shape[1] == 15 and out["offsets"].shape[1] == 28
    assert out["feature2d"].shape == (1, 128, 8, 8)
    assert model.heads["centre2d"].skeleton == "crowdpose14"


@pytest.mark.parametrize("head", ["centre2d", "centre3d"])
def test_bn_fusion_and_exact_pruning_keep_the_outputs(head, tmp_path):
    torch.manual_seed(0)
    for width in (1.0, 0.5):
        config = {"backbone": "selecsls60", "backbone_width": width, "heads": {head: {}}}
        source = zero_gammas(randomize_bn(build_model(config)), 0.3, seed=6).eval()
        images = torch.randn(1, 3, 99, 161, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = source(images)
            fused = fuse_bn(source)(images)
            pruned = prune_model(source)
            got = pruned(images)
        assert not isinstance(pruned.heads[head], FilledHead)  # it shrinks, not refills
        for key in expected:
            scale = expected[key].abs().max()
            assert (fused[key] - expected[key]).abs().max() <= 1e-4 * scale
            assert (got[key] - expected[key]).abs().max() <= 1e-4 * scale
        loaded = load_model(save_model(pruned, tmp_path / f"pruned{width}.pth")).eval()
        with torch.no_grad():
            assert torch.equal(loaded(images)["offsets"], got["offsets"])


def test_a_few_steps_fit_fixed_targets():
    """The head can learn: fixed features and targets, fp32, 20 Adam steps halve the loss."""
    torch.manual_seed(0)
    specs = {"stride16": FeatureSpec(64, 16), "stride8": FeatureSpec(32, 8)}
    head = Centre2DHead(specs)
    features = {"stride16": torch.randn(2, 64, 4, 4), "stride8": torch.randn(2, 32, 8, 8)}
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, :2] = np.random.default_rng(0).uniform(16, 48, (17, 2))
    person[0, :, 2] = 2
    encoded = CentreCodec().encode(person, (64, 64))
    targets = {k: torch.from_numpy(v)[None].repeat(2, 1, 1, 1) for k, v in encoded.items()}
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    history = []
    for _ in range(20):
        loss = centre_losses(head(features), targets, heatmap_fg_weight=10.0)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(float(loss))
    assert history[-1] < 0.5 * history[0], history


def test_loss_masks_and_shape_errors():
    codec = CentreCodec()
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, :2] = np.random.default_rng(1).uniform(10, 50, (17, 2))
    person[0, :, 2] = 2
    targets = {k: torch.from_numpy(v)[None] for k, v in codec.encode(person, (64, 64)).items()}
    outputs = {"heatmaps": torch.ones(1, 19, 8, 8), "offsets": torch.ones(1, 36, 8, 8)}
    losses = centre_losses(outputs, targets)
    assert losses["offset_loss"] > 0 and losses["heatmap_loss"] > 0
    masked = centre_losses(outputs, {**targets, "mask": torch.zeros(1, 1, 8, 8)})
    assert float(masked["loss"]) == 0.0  # a crowd everywhere: nothing is learned
    with pytest.raises(ValueError, match="offsets: prediction"):
        centre_losses({**outputs, "offsets": torch.ones(1, 34, 8, 8)}, targets)


def test_registry_selects_codec_and_loss():
    assert HEADS["centre2d"] is Centre2DHead
    assert isinstance(make_codec2d("centre2d", {"sigma": 5.0, "paf_samples": 3}), CentreCodec)
    head = get_head2d("centre2d")
    assert head.loss_options({"offset_weight": 2.0, "paf_weight": 1.0}) == {"offset_weight": 2.0}
    assert head_of({"heads": {"centre2d": {}}}) == "centre2d"
    assert head_of({"heads": {"xnect3d": {}}}) == "xnect2d"
    config = {"heads": {"centre2d": {"skeleton": "crowdpose14"}}}
    codec = codec_from({"centre_sigma": 9.0, "paf_weight": 1.0}, config)
    assert isinstance(codec, CentreCodec) and codec.skeleton == "crowdpose14"
    assert codec.centre_sigma == 9.0
    with pytest.raises(ValueError, match="valid: xnect2d, centre2d"):
        get_head2d("dekr")
    with pytest.raises(ValueError, match="no feature 'stride4x'"):
        centre_model(fuse_feature="stride4x")


class CentreOracle(torch.nn.Module):
    """A 'network' returning the centre codec's targets of known people (input pixels)."""

    def __init__(self, people: np.ndarray) -> None:
        super().__init__()
        self.people = people
        self.config = {"backbone": "oracle", "heads": {"centre2d": {}}}

    def forward(self, images):
        size = (images.shape[-1], images.shape[-2])
        encoded = CentreCodec().encode(self.people, size)
        return {k: torch.from_numpy(encoded[k])[None] for k in ("heatmaps", "offsets")}


def test_demo_estimator_and_flip_test_take_the_head():
    rng = np.random.default_rng(3)
    people = np.zeros((2, 17, 3), np.float32)
    people[..., 1] = rng.uniform(20, 170, (2, 17))  # inside the 256x192 frame
    people[0, :, 0] = rng.uniform(20, 90, 17)
    people[1, :, 0] = rng.uniform(130, 220, 17)
    people[..., 2] = 2
    oracle = CentreOracle(people)
    estimator = PoseEstimator(TorchRunner(oracle), (256, 192), codec_from({}, oracle.config))
    frame = np.zeros((192, 256, 3), np.uint8)
    prediction = estimator(frame)
    assert len(prediction.keypoints) == 2
    order = np.argsort(prediction.keypoints[:, 0, 0])
    np.testing.assert_allclose(prediction.keypoints[order, :, :2], people[..., :2], atol=0.1)
    # the flip test on a real network: mirroring twice is the identity on the averaged maps
    torch.manual_seed(0)
    model = centre_model("selecsls42b", 0.25).eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        averaged = predict_with_flip(model, images)
        mirrored = predict_with_flip(model, torch.flip(images, [3]))
    from selecsls.heads.flip_test import mirror_back

    back = mirror_back(mirrored, "coco17")
    for key in ("heatmaps", "offsets"):
        torch.testing.assert_close(back[key], averaged[key], atol=1e-4, rtol=1e-4)
