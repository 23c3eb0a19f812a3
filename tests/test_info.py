"""tools/info.py: the configuration table and one real image through a classifier."""

from __future__ import annotations

import pytest

from selecsls.tools import info
from selecsls.tools._cli import run_cli


def test_table_lists_every_config_with_seed_params():
    table = info.config_table(64).splitlines()
    assert len(table) == 2 + 6
    row = next(line for line in table if line.startswith("| selecsls60 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "30.67"  # the seed's 30,670,768 parameters
    assert cells[3:] == ["128 x 16 x 16", "288 x 8 x 8", "416 x 4 x 4"]
    assert float(cells[2]) > 0


@pytest.mark.parametrize("native_bf16", [True, False])
def test_classifies_a_real_image(shared_data, capsys, monkeypatch, native_bf16):
    monkeypatch.setattr(info, "cpu_has_bf16", lambda: native_bf16)
    image = shared_data / "imagenet_sample" / "val" / "n02391049" / "n02391049_zebra.JPEG"
    argv = ["--image", str(image), "--model", "selecsls42", "--size", "64", "--no-table"]
    assert run_cli(info.main, argv) == 0
    out = capsys.readouterr().out
    assert "n02391049_zebra.JPEG through selecsls42, random weights" in out
    precision = "bf16" if native_bf16 else "fp32"  # the fast path of the CPU at hand
    assert out.count("%  ") == 5 and f"deploy (BN folded, channels_last, {precision})" in out


def test_missing_image_is_a_clear_error(tmp_path, capsys):
    assert run_cli(info.main, ["--image", str(tmp_path / "x.jpg"), "--no-table"]) == 2
    assert "x.jpg: no such image" in capsys.readouterr().err
