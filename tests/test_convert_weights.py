"""tools/convert_weights.py: every format to every other, exact, with clear errors."""

from __future__ import annotations

import torch

from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.backbones.fusion import fuse_bn
from selecsls.heads import build_classifier, export_state_dict, save_model
from selecsls.tools import convert_weights
from selecsls.tools._cli import run_cli


def test_round_trip_through_all_formats_is_exact(tmp_path, capsys):
    model = build_classifier("selecsls42b", num_classes=10)
    save_model(model, tmp_path / "ours.pth")
    chain = [("ours.pth", "seed.pth", "seed"), ("seed.pth", "timm.pth", "timm")]
    chain += [("timm.pth", "back.pth", "selecsls")]
    for src, dst, fmt in chain:
        argv = [str(tmp_path / src), str(tmp_path / dst), "--to", fmt]
        assert run_cli(convert_weights.main, argv) == 0
    assert "wrote" in capsys.readouterr().out
    seed = read_checkpoint(tmp_path / "seed.pth")
    assert seed.keys() == export_state_dict(model, "seed").keys()
    back = read_checkpoint(tmp_path / "back.pth")
    assert back["config"] == model.config
    original = model.state_dict()
    assert back["state_dict"].keys() == original.keys()
    assert all(torch.equal(back["state_dict"][k], v) for k, v in original.items())


def test_fused_model_cannot_become_seed_format(tmp_path, capsys):
    save_model(fuse_bn(build_classifier("selecsls42", num_classes=3)), tmp_path / "fused.pth")
    argv = [str(tmp_path / "fused.pth"), str(tmp_path / "out.pth"), "--to", "seed"]
    assert run_cli(convert_weights.main, argv) == 2
    assert "only plain classifiers exist in seed format" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_bad_source_is_one_line_error(tmp_path, capsys):
    argv = [str(tmp_path / "nope.pth"), str(tmp_path / "out.pth"), "--to", "timm"]
    assert run_cli(convert_weights.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.pth: no such file" in err
    assert "Traceback" not in err
