"""Exact channel pruning + BN folding: equality with the unpruned model, reload, CLI."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from selecsls.backbones.prune import KeepRule, PrunedConv2d
from selecsls.heads import HEADS, build_classifier, build_model, load_model, save_model
from selecsls.heads.prune import FilledHead, prune_model
from selecsls.tools import prune as prune_tool
from selecsls.tools.bench import prune as bench_prune
from selecsls.tools.bench.flops import count_macs, count_params
from selecsls.tools.bench.prune import zero_gammas
from selecsls.tools.deploy.prune_report import output_difference, removed_nonzero_gammas

ALL_CONFIGS = [
    "selecsls42", "selecsls42b", "selecsls60", "selecsls60b", "selecsls84", "selecsls102"
]  # fmt: skip
ODD_SIZE = (161, 99)  # neither side a multiple of 32: odd sizes at most strides


def sparsify(model: nn.Module, fraction: float = 0.3, seed: int = 0) -> nn.Module:
    """In place: random BN statistics, gammas of both signs with `fraction` of every layer's
    gammas exactly zero, betas of both signs (so removed channels hold nonzero constants)."""
    return zero_gammas(model, fraction, seed)


def relative_error(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a)


@torch.no_grad()
def outputs(model: nn.Module, size: tuple[int, int], seed: int = 1) -> dict:
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    return model.eval()(x)


@pytest.fixture(scope="module")
def pruned60() -> tuple[nn.Module, nn.Module, dict]:
    """(source, pruned, snapshot of the source's state dict and config taken before pruning)"""
    source = sparsify(build_classifier("selecsls60"))
    snapshot = {k: v.clone() for k, v in source.state_dict().items()}
    snapshot["config"] = copy.deepcopy(source.config)
    return source, prune_model(source), snapshot


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_pruned_logits_equal_unpruned(name: str) -> None:
    source = sparsify(build_classifier(name), seed=ALL_CONFIGS.index(name))
    pruned = prune_model(source)
    bns = [m for m in source.modules() if isinstance(m, nn.BatchNorm2d)]
    zero = sum(int((m.weight == 0).sum()) for m in bns)
    total = sum(m.num_features for m in bns)
    assert zero >= 0.3 * total
    assert count_params(pruned) < 0.8 * count_params(source)
    for size in [(224, 224), ODD_SIZE]:
        assert relative_error(outputs(source, size), outputs(pruned, size)) < 1e-4


def test_border_correction_is_needed(pruned60) -> None:
    """Negative control: without the border terms the same comparison fails clearly."""
    source, pruned, _ = pruned60
    broken = copy.deepcopy(pruned)
    borders = [m for m in broken.modules() if isinstance(m, PrunedConv2d)]
    assert any(m.border_kernel is not None for m in borders)
    for m in borders:
        if m.border_kernel is not None:
            m.border_kernel.zero_()
    assert relative_error(outputs(source, ODD_SIZE), outputs(broken, ODD_SIZE)) > 1e-2


def test_cached_border_offsets_follow_size_and_weights(pruned60) -> None:
    """Offsets are cached per input size without grad; the cache must never serve stale maps."""
    _, pruned, _ = pruned60
    model = copy.deepcopy(pruned)
    x = torch.randn(1, 3, *ODD_SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        first = model(x)["logits"]
        model(torch.randn(1, 3, 64, 96))  # another size in between
        again = model(x)["logits"]
    assert torch.equal(first, again)
    uncached = model(x)["logits"].detach()  # grad enabled: computed afresh
    assert torch.allclose(first, uncached, rtol=0, atol=1e-5 * float(first.abs().max()))
    layer = next(m for m in model.modules() if getattr(m, "border_kernel", None) is not None)
    with torch.no_grad():
        layer.border_kernel.mul_(2)  # an in-place edit (as load_state_dict does) invalidates
        changed = model(x)["logits"]
    assert not torch.equal(first, changed)


def test_fusion_only_is_exact() -> None:
    source = sparsify(build_classifier("selecsls42b"), fraction=0.0)
    fused = prune_model(source, threshold=None)
    # BN loses gamma and beta, the conv gains a bias: one parameter less per channel
    assert count_params(fused) == count_params(source) - sum(
        m.num_features for m in source.modules() if isinstance(m, nn.BatchNorm2d)
    )
    for size in [(224, 224), ODD_SIZE]:
        assert relative_error(outputs(source, size), outputs(fused, size)) < 1e-5


def test_source_untouched(pruned60) -> None:
    source, _, before = pruned60
    assert source.config == before.pop("config")
    after = source.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, PrunedConv2d) for m in source.modules())
    assert source.feature_specs["stride16"].channels == 416


def test_save_load_identical(pruned60, tmp_path) -> None:
    _, pruned, _ = pruned60
    path = save_model(pruned, tmp_path / "pruned.pth")
    loaded = load_model(path)
    assert loaded.config["pruned"] == pruned.config["pruned"]
    assert loaded.feature_specs == pruned.feature_specs
    for size in [(224, 224), ODD_SIZE]:
        a, b = outputs(pruned, size), outputs(loaded, size)
        assert torch.equal(a["logits"], b["logits"])


def test_layer_with_zero_survivors(tmp_path) -> None:
    source = sparsify(build_classifier("selecsls42"), seed=3)
    with torch.no_grad():
        source.backbone.stem[1].weight.zero_()  # all-constant image features
        source.backbone.features[1].conv3[1].weight.zero_()  # an empty part of conv6's concat
        source.backbone.features[3].conv6[1].weight.zero_()  # an empty stride-8 feature map
        source.heads.classification.convs[3][1].weight.zero_()  # nothing reaches the fc
    pruned = prune_model(source)
    assert pruned.feature_specs["stride8"].channels == 0
    assert pruned.heads.classification.fc.in_features == 0
    for size in [(224, 224), ODD_SIZE]:
        assert relative_error(outputs(source, size), outputs(pruned, size)) < 1e-4
    loaded = load_model(save_model(pruned, tmp_path / "empty.pth"))
    assert torch.equal(outputs(loaded, ODD_SIZE)["logits"], outputs(pruned, ODD_SIZE)["logits"])


def test_below_threshold_gammas_are_reported() -> None:
    source = sparsify(build_classifier("selecsls42"), seed=4)
    small = 0
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight[m.weight == 0] = 5e-4  # nonzero but below the threshold
                small += int((m.weight == 5e-4).sum())
    count, largest = removed_nonzero_gammas(source, KeepRule(1e-3))
    assert count == small and largest == pytest.approx(5e-4)
    pruned = prune_model(source, 1e-3)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    (absolute, relative) = output_difference(source, pruned, x)["logits"]
    assert 0 < relative < 0.05 and absolute > 0


def test_bad_arguments_are_rejected() -> None:
    source = build_classifier("selecsls42")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold"):
            prune_model(source, bad)
    pruned = prune_model(source)
    with pytest.raises(ValueError, match="already pruned"):
        prune_model(pruned)


class TwoMapHead(nn.Module):
    """A head without a pruner (reads two feature maps): exercises the FilledHead fallback."""

    def __init__(self, feature_specs) -> None:
        super().__init__()
        self.a = nn.Sequential(
            nn.Conv2d(feature_specs["stride8"].channels, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
        )
        self.b = nn.Conv2d(feature_specs["stride16"].channels, 4, 3, padding=1)

    def forward(self, features):
        return {"a": self.a(features["stride8"]), "b": self.b(features["stride16"])}


def test_head_without_pruner_stays_exact(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(HEADS, "twomap", TwoMapHead)
    config = {"backbone": "selecsls42", "heads": {"twomap": {}}}
    source = sparsify(build_model(config), seed=5)
    pruned = prune_model(source)
    assert isinstance(pruned.heads["twomap"], FilledHead)
    assert relative_error(outputs(source, ODD_SIZE), outputs(pruned, ODD_SIZE)) < 1e-4
    loaded = load_model(save_model(pruned, tmp_path / "twomap.pth"))
    assert torch.equal(outputs(loaded, ODD_SIZE)["b"], outputs(pruned, ODD_SIZE)["b"])


@pytest.mark.parametrize("head, width", [("xnect2d", 1.0), ("xnect3d", 1.0), ("xnect2d", 0.5)])
def test_pose_heads_absorb_constants(head: str, width: float, tmp_path) -> None:
    if head not in HEADS:
        pytest.skip(f"no {head} head")
    config = {"backbone": "selecsls60", "backbone_width": width, "heads": {head: {}}}
    source = sparsify(build_model(config), seed=6)
    pruned = prune_model(source)
    assert relative_error(outputs(source, ODD_SIZE), outputs(pruned, ODD_SIZE)) < 1e-4
    assert not isinstance(pruned.heads[head], FilledHead)
    loaded = load_model(save_model(pruned, tmp_path / "pose.pth"))
    a, b = outputs(loaded, ODD_SIZE), outputs(pruned, ODD_SIZE)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lifting_head_is_left_alone(tmp_path) -> None:
    """Stage I + II: the lifting head reads no feature map, so pruning keeps it a plain
    LiftingHead with the same weights, and Stage II's predictions do not change."""
    if "lifting" not in HEADS:
        pytest.skip("no lifting head")
    from selecsls.heads.pose3d.lifting import LiftingHead, find_lifting

    config = {"backbone": "selecsls42", "heads": {"xnect3d": {}, "lifting": {}}}
    source = sparsify(build_model(config), seed=8)
    with torch.no_grad():  # trained-looking BN statistics, so eval mode is not the identity
        for module in source.heads["lifting"].modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    pruned = prune_model(source)
    head = pruned.heads["lifting"]
    assert type(head) is LiftingHead and not pruned.config["pruned"]["filled_heads"]
    before, after = source.heads["lifting"].state_dict(), head.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    people = torch.randn(5, 14, 66, generator=torch.Generator().manual_seed(2))
    expected = find_lifting(source).eval()(people)
    loaded = load_model(save_model(pruned, tmp_path / "stage12.pth"))
    assert type(loaded.heads["lifting"]) is LiftingHead
    for model in (pruned, loaded):
        lifted = find_lifting(model).eval()(people)
        assert all(torch.equal(lifted[k], expected[k]) for k in expected)
    legacy = copy.deepcopy(pruned)  # files pruned before the lifting pruner wrap the head
    legacy.heads["lifting"] = FilledHead(legacy.heads["lifting"], {})
    assert find_lifting(legacy) is legacy.heads["lifting"].head.net


def test_count_macs() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(512, 10))
    assert count_macs(conv, (16, 16)) == 8 * 8 * 8 * 27 + 512 * 10
    source = sparsify(build_classifier("selecsls42"))
    assert count_macs(prune_model(source), (64, 64)) < 0.7 * count_macs(source, (64, 64))


def test_prune_tool_end_to_end(tmp_path, capsys) -> None:
    weights = save_model(sparsify(build_classifier("selecsls42"), seed=7), tmp_path / "m.pth")
    out = tmp_path / "out" / "pruned.pth"
    argv = [str(weights), "--output", str(out), "--size", "64", "--batch", "2"]
    assert prune_tool.main(argv) == 0
    text = capsys.readouterr().out
    assert "stage3" in text and "head:classification" in text and "exact:" in text
    relative = float(text.split("of max |logits|")[0].rsplit("(", 1)[1])
    assert relative < 1e-4
    assert load_model(out).config["pruned"]["threshold"] == 1e-3
    for bad in (["--threshold", "-1"], ["--threshold", "nan"]):
        assert prune_tool.run_cli(prune_tool.main, [str(weights), "--output", str(out), *bad]) == 2
    missing = [str(tmp_path / "missing.pth"), "--output", str(out)]
    assert prune_tool.run_cli(prune_tool.main, missing) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bench_prune_runs_and_notes_slow_bf16(monkeypatch, capsys, native_bf16):
    monkeypatch.setattr(bench_prune, "cpu_has_bf16", lambda: native_bf16)
    argv = ["--model", "selecsls42b", "--sizes", "32", "--batches", "1", "--reps", "1"]
    assert bench_prune.main([*argv, "--modes", "fast"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| fast |")]
    assert len(rows) == 1 and ("no native bf16" in out) != native_bf16
