"""The CPU compute-bound benchmark (tools/bench/cpu_bound.py): its arithmetic on given figures,
and a real run on a tiny network that is well formed (no assertion on this CPU's speed)."""

from __future__ import annotations

import json

import pytest

from selecsls.heads import build_model
from selecsls.tools.bench import cpu_bound
from selecsls.tools.bench.flops import count_macs


def test_bounds_take_each_precisions_fastest_kernel():
    result = {
        "macs": 5e9,
        "matmul_gops": {"fp32": 100.0, "bf16": 400.0, "int8 linear": 500.0, "int8 _int_mm": 1000.0},
        "network_ms": {"fp32": [120.0], "bf16": [30.0, 40.0, 50.0], "int8": [14.0, 15.0, 16.0]},
    }
    assert cpu_bound.bounds(result) == pytest.approx({"fp32": 100.0, "bf16": 25.0, "int8": 10.0})
    text = "\n".join(cpu_bound.report(result, "header"))
    assert "| bf16 | 40.0 | 10.0 | 1.60x | 4.00x |" in text
    assert "CPU's compute bound: 10.0 ms (int8 matmuls)" in text
    assert "fastest network: int8 15.0 ms = 1.50x the bound (target <= 1.5x: met)" in text
    result["network_ms"]["int8"] = [16.0]
    assert "1.60x the bound (target <= 1.5x: missed)" in "\n".join(cpu_bound.report(result, "h"))


def test_real_run_is_well_formed(tmp_path, capsys):
    out = tmp_path / "bound.json"
    argv = ["--backbone", "selecsls42b", "--width", "0.25", "--size", "64x48", "--reps", "1"]
    argv += ["--threads", "1", "--matmul-size", "256", "--json", str(out)]
    assert cpu_bound.main(argv) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    model = build_model(
        {"backbone": "selecsls42b", "backbone_width": 0.25, "heads": {"xnect2d": {}}}
    ).eval()
    assert payload["macs"] == count_macs(model, (48, 64))
    assert "fp32" in payload["network_ms"] and "fp32" in payload["matmul_gops"]
    assert all(v > 0 for v in payload["matmul_gops"].values())
    assert set(payload["bound_ms"]) <= {"fp32", "bf16", "int8"}
    assert "CPU's compute bound" in printed and "| network | ms (median)" in printed


def test_bad_arguments_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cpu_bound.main(["--backbone", "selecsls999"])
    assert exit_info.value.code == 2 and "selecsls999" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cpu_bound.main(["--reps", "0"])
