"""The SelecSLS networks are exactly the seed's: parameter counts, timm equivalence, features."""

from __future__ import annotations

import pytest
import torch
from conftest import ALL_CONFIGS, randomize_bn

from selecsls.backbones import BACKBONES, STAGE_TABLES, build_backbone, canonical_name
from selecsls.backbones.selecsls import scale_blocks
from selecsls.heads import build_classifier, build_model, convert_keys, load_model, save_model

SEED_PARAMS = {
    "selecsls42": 30_354_952,
    "selecsls42b": 32_458_248,
    "selecsls60": 30_670_768,
    "selecsls60b": 32_774_064,
    "selecsls84": 40_468_840,
    "selecsls102": 40_456_200,
}


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_parameter_counts_equal_seed(name):
    with torch.device("meta"):
        model = build_classifier(name)
    assert sum(p.numel() for p in model.parameters()) == SEED_PARAMS[name]


@pytest.mark.parametrize("name", ["selecsls42", "selecsls42b", "selecsls60", "selecsls60b"])
def test_logits_equal_timm(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = randomize_bn(timm.create_model(name, pretrained=False), seed=1).eval()
    ours = build_classifier(name).eval()
    ours.load_state_dict(convert_keys(reference.state_dict(), "timm", "selecsls"))
    for height, width in [(224, 224), (320, 288)]:
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            expected = reference(x)
            got = ours(x)["logits"]
        assert got.shape == (1, 1000)
        # relative to the largest logit (~1e3 here, where one fp32 step is ~1e-4): a key-mapping
        # error shows as a difference of order 1
        tolerance = 1e-6 * float(expected.abs().max())
        assert torch.allclose(got, expected, rtol=0, atol=tolerance), (got - expected).abs().max()


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_feature_contract(name):
    backbone = build_backbone(name).eval()
    specs = backbone.feature_specs
    assert list(specs) == ["stride4", "stride8", "stride16"]
    for height, width in [(64, 64), (72, 100)]:  # the second is not a multiple of 32
        with torch.no_grad():
            feats = backbone(torch.randn(2, 3, height, width))
        assert list(feats) == list(specs)
        for key, spec in specs.items():
            assert spec.stride == int(key.removeprefix("stride"))
            expected = (2, spec.channels, -(-height // spec.stride), -(-width // spec.stride))
            assert tuple(feats[key].shape) == expected, key


def test_width_scales_every_block_and_the_heads_follow(tmp_path):
    table = STAGE_TABLES["selecsls42b"]
    assert scale_blocks(table, 1.0) == table
    half = build_backbone("selecsls42b", width=0.5).eval()
    assert {k: s.channels for k, s in half.feature_specs.items()} == {
        "stride4": 64,
        "stride8": 144,
        "stride16": 240,
    }
    rows = scale_blocks(table, 0.5)  # every width a multiple of 8, the stem's 32 kept
    assert all(c % 8 == 0 for row in rows for c in row[1:4]) and rows[0][0] == 32
    assert half.features[0].conv1[0].in_channels == 32
    full = build_backbone("selecsls42b")
    ratio = sum(p.numel() for p in half.parameters()) / sum(p.numel() for p in full.parameters())
    assert 0.2 < ratio < 0.3, ratio  # about width squared
    model = build_model(
        {"backbone": "selecsls42b", "backbone_width": 0.5, "heads": {"xnect2d": {}}}
    )
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 80))
    assert out["heatmaps"].shape == (1, 19, 8, 10) and out["pafs"].shape == (1, 38, 8, 10)
    loaded = load_model(save_model(model, tmp_path / "narrow.pt"))  # the width travels along
    assert loaded.config["backbone_width"] == 0.5
    for bad in (0.0, -1.0, 5.0):
        with pytest.raises(ValueError, match="backbone width must be in"):
            build_backbone("selecsls42b", width=bad)


def test_name_spellings_and_unknown_name():
    assert canonical_name("SelecSLS42_B") == canonical_name("selecsls42b") == "selecsls42b"
    assert canonical_name("selecsls-60") == "selecsls60"
    with pytest.raises(ValueError, match="valid names: .*selecsls60b"):
        build_backbone("selecsls50")
    assert set(BACKBONES) == set(SEED_PARAMS)


def test_model_config_errors_name_the_choices():
    with pytest.raises(
        ValueError, match="unknown head 'segmentation'; valid heads: classification"
    ):
        build_model({"backbone": "selecsls42", "heads": {"segmentation": {}}})
    with pytest.raises(ValueError, match="bad arguments for head 'classification'"):
        build_model({"backbone": "selecsls42", "heads": {"classification": {"colour": 1}}})
    with pytest.raises(ValueError, match="unknown classification head variant"):
        build_model({"backbone": "selecsls42", "heads": {"classification": {"variant": "x"}}})


def test_classifier_trains_one_step():
    model = build_classifier("selecsls42", num_classes=3)
    logits = model(torch.randn(2, 3, 64, 64))["logits"]
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
