"""The benchmark tool's logic on tiny inputs: modes build and run, tables and JSON are well formed,
user mistakes give clear errors, training reports positive memory. No timing is asserted."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from selecsls.heads import build_classifier, save_model
from selecsls.tools import benchmark
from selecsls.tools.bench import models as bench_models
from selecsls.tools.bench import suite as bench_suite
from selecsls.tools.bench.models import (
    MODES,
    BenchmarkError,
    check_folding,
    fold_bn_generic,
    prepare,
    resolve_model,
)
from selecsls.tools.bench.report import fastest_table, forward_tables, spread_note, train_table
from selecsls.tools.bench.timing import Case, Progress, measure_forward, summarize

# One thread: on a shared 2-core machine two OpenMP threads can wait on each other for seconds.
TINY = [
    "--sizes",
    "32",
    "--batches",
    "1",
    "--reps",
    "1",
    "--warmup",
    "1",
    "--quiet",
    "--threads",
    "1",
]


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in `text` as rows of cells (separator rows dropped); checks that
    all rows of a table have the header's number of cells."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r"-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            assert len({len(r) for r in current}) == 1, current
            tables.append(current)
            current = []
    return tables


def test_every_mode_runs_for_selecsls_and_resnet(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    modes = ["eager", "deploy", "bf16", "fp16"]
    argv = [
        "--models",
        "selecsls42b",
        "resnet50",
        "--modes",
        *modes,
        *TINY,
        "--json",
        str(out_json),
    ]
    assert benchmark.main(argv) == 0
    text = capsys.readouterr().out
    times, ratios, fastest = markdown_tables(text)
    rows = [f"{m}/{mode}" for m in ("selecsls42b", "resnet50") for mode in modes]
    assert [r[0] for r in times[1:]] == rows
    assert times[0] == ["model/mode", "32x32 b1"]
    for row in times[1:]:
        assert float(row[1].split()[0]) > 0
    for row in ratios[1:]:
        assert float(row[1].rstrip("x")) > 0
        if row[0].startswith("resnet50/"):  # each mode compares with resnet50 in the same mode
            assert row[1] == "1.00x"
    assert [r[0] for r in fastest[1:]] == ["selecsls42b", "resnet50"]

    payload = json.loads(out_json.read_text())
    assert payload["baseline"] == "resnet50"
    records = payload["forward"]
    assert len(records) == len(rows)
    for rec in records:
        assert rec["size"] == 32 and rec["batch"] == 1 and len(rec["times_ms"]) == 1
        assert rec["min_ms"] <= rec["median_ms"] <= rec["max_ms"]
    assert payload["machine"]["threads"] >= 1


def small_net(channels: int, second_conv: bool, classifier: bool) -> nn.Module:
    """Conv-BN-ReLU (+ Conv-ReLU) (+ pool + linear head): the layer kinds each mode handles."""
    layers = [nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
    if second_conv:
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
    if classifier:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 4)]
    return nn.Sequential(*layers).eval()


def test_compile_mode_runs_and_matches_eager():
    model = small_net(8, second_conv=False, classifier=True)
    ready = prepare(model, "compile", torch.device("cpu"))
    assert ready.channels_last
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        got = ready.runner(x.contiguous(memory_format=torch.channels_last))
        want = model(x)
    assert got.dtype == torch.bfloat16  # autocast really on
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_frozen_mode_runs_and_matches_eager():
    model = small_net(8, second_conv=True, classifier=False)
    ready = prepare(model, "frozen", torch.device("cpu"))
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        with torch.profiler.profile() as profile:
            got = ready.runner(x.contiguous(memory_format=torch.channels_last))
        want = model(x)
    assert got.dtype == torch.bfloat16  # bf16 weights, bf16 input
    ops = {event.key for event in profile.key_averages()}
    # frozen: prepacked oneDNN convolutions, ReLU fused, where oneDNN has bf16 (AVX-512 / AMX);
    # inductor keeps aten's convolutions elsewhere
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert "mkldnn::_convolution_pointwise" in ops, sorted(ops)
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_int8_mode_runs_quantized_and_close_to_eager():
    torch.manual_seed(0)
    model = small_net(16, second_conv=True, classifier=True)
    ready = prepare(model, "int8", torch.device("cpu"))
    assert not ready.channels_last
    assert any("quantized" in type(m).__module__ for m in ready.runner.modules())
    x = torch.randn(2, 3, 32, 32)  # another size than the calibration's 224x224
    with torch.inference_mode():
        got, want = ready.runner(x), model(x)
    assert got.dtype == torch.float32
    assert float((got - want).norm() / want.norm()) < 0.1
    with pytest.raises(BenchmarkError, match="CPU only"):
        prepare(model, "int8", torch.device("cuda"))


def test_graph_mode_needs_cuda_and_says_so(capsys):
    model = small_net(16, second_conv=True, classifier=True)
    with pytest.raises(BenchmarkError, match="mode graph: CUDA graphs need a CUDA device"):
        prepare(model, "graph", torch.device("cpu"))
    assert "graph" in MODES and "CUDA graph" in MODES["graph"]
    argv = ["--models", "selecsls42", "--modes", "graph", "--sizes", "32", "--batches", "1"]
    code = benchmark.main(argv)
    assert code == 2 and "mode graph" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_mode_matches_eager_on_cuda():
    torch.manual_seed(0)
    model = small_net(16, second_conv=True, classifier=True).cuda().eval()
    ready = prepare(model, "graph", torch.device("cuda"))
    x = torch.randn(2, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(2):
            got, want = ready.runner(x).float(), model(x)
    assert float((got - want).norm() / want.norm()) < 1e-2


def test_generic_bn_folding_is_exact_for_resnet50():
    model = resolve_model("resnet50").build().eval()
    folded, count = fold_bn_generic(model)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 53
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    check_folding(model)  # randomised BN statistics, raises on a mismatch


def test_folding_check_catches_wrong_registration_order():
    class Misordered(nn.Module):
        """Registers conv then BN, but applies the BN to the input, not the conv output."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.bn(x))

    with pytest.raises(BenchmarkError, match="changed the output"):
        check_folding(Misordered())


def test_checkpoint_path_is_benchmarked_under_its_file_name(tmp_path, capsys):
    path = save_model(build_classifier("selecsls42b", num_classes=10), tmp_path / "small.pth")
    assert benchmark.main(["--models", str(path), "--modes", "deploy", *TINY]) == 0
    rows = [r[0] for r in markdown_tables(capsys.readouterr().out)[0][1:]]
    assert rows == ["small/deploy"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "resnet5"], "unknown model 'resnet5'"),
        (["--models", "missing_file.pth"], "checkpoint file not found"),
        (["--models", "selecsls42b", "--baseline", "resnet50/eager", "--train-only"], "baseline"),
        (["--models", "resnet50", "--baseline", "resnet50/bf16"], "mode bf16 is not in --modes"),
        (["--models", "not_a_checkpoint.pth"], "not_a_checkpoint.pth"),
    ],
)
def test_user_mistakes_exit_cleanly(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_checkpoint.pth").write_text("not a pickle")
    assert benchmark.main(argv + TINY) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_model_lists_valid_names_from_the_command_line():
    cmd = [sys.executable, "-m", "selecsls.tools.benchmark", "--models", "nonsense"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for name in ("selecsls60", "resnet50", "timm:vovnet39a", "checkpoint path"):
        assert name in proc.stderr


def test_unknown_mode_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--modes", "turbo"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "turbo" in err and "eager" in err and "Traceback" not in err


def test_missing_timm_skips_timm_models_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(bench_models, "timm_available", lambda: False)
    assert benchmark.main(["--models", "selecsls42b", "timm:selecsls42b", *TINY]) == 0
    out = capsys.readouterr().out
    assert [r[0] for r in markdown_tables(out)[0][1:]] == ["selecsls42b/eager"]
    assert "note: skipped timm:selecsls42b: timm is not installed" in out


def test_models_are_interleaved_and_rotated():
    calls: list[str] = []
    cases = [Case(name, lambda x, n=name: calls.append(n), False) for name in "abc"]
    measure_forward(
        cases,
        [8],
        [1, 2],
        reps=3,
        warmup=0,
        device=torch.device("cpu"),
        progress=Progress(6, quiet=True),
    )
    assert calls[:9] == list("abcbcacab")
    assert all(len(case.times[(8, b)]) == 3 for case in cases for b in (1, 2))


def timed_record(model: str, mode: str, times: list[float]) -> dict:
    return {"model": model, "mode": mode, "size": 8, "batch": 1, "times_ms": times} | summarize(
        times
    )


# Two models timed through a slow spell of the machine: selecsls60 doubles, resnet50 grows 1.5x.
SPELL = [
    timed_record("selecsls60", "int8", [400.0, 410.0, 800.0, 820.0, 420.0]),
    timed_record("resnet50", "int8", [1000.0, 1010.0, 1500.0, 1520.0, 1020.0]),
]


def test_stat_min_compares_the_undisturbed_repetitions():
    _, median_ratios = markdown_tables(forward_tables(SPELL, [8], [1], "resnet50"))
    assert median_ratios[1] == ["selecsls60/int8", f"{1020 / 420:.2f}x"]
    text = forward_tables(SPELL, [8], [1], "resnet50", stat="min")
    assert "minimum over the repetitions" in text and "its min / row min" in text
    times, ratios = markdown_tables(text)
    assert times[1] == ["selecsls60/int8", "400.0 +- 46%"]  # spread stays relative to the median
    assert ratios[1] == ["selecsls60/int8", "2.50x"]
    fastest = markdown_tables(fastest_table(SPELL, [8], [1], "resnet50", stat="min"))[0]
    assert fastest[1] == ["selecsls60", "400.0 (int8, 2.50x)"]


def test_spread_note_flags_a_run_whose_speed_changed():
    note = spread_note(SPELL)
    assert note is not None and note.startswith("2 of 2 cells") and "--stat min" in note
    steady = [timed_record("resnet50", "int8", [1000.0, 1010.0, 1020.0, 990.0])]
    assert spread_note(steady) is None
    assert (
        spread_note([{"model": "m", "mode": "eager", "size": 8, "batch": 1, "error": "OOM"}])
        is None
    )


def test_stat_option_from_the_command_line(capsys):
    argv = ["--models", "selecsls42b", "resnet50", "--stat", "min", *TINY]
    assert benchmark.main(argv) == 0
    out = capsys.readouterr().out
    assert "minimum over the repetitions" in out and "its min / row min" in out
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--stat", "mean"])
    assert exit_info.value.code == 2
    assert "mean" in capsys.readouterr().err


def test_summarize_quartiles():
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats["median_ms"], stats["q1_ms"], stats["q3_ms"]) == (3.0, 2.0, 4.0)
    assert (stats["min_ms"], stats["max_ms"]) == (1.0, 5.0)
    assert summarize([7.0])["q1_ms"] == summarize([7.0])["q3_ms"] == 7.0


def test_train_measurement_reports_positive_memory(tmp_path, capsys):
    out_json = tmp_path / "train.json"
    argv = [
        "--models",
        "selecsls42b",
        "resnet50",
        "--train-only",
        "--train-batch",
        "2",
        "--train-size",
        "32",
        "--reps",
        "1",
        "--warmup",
        "1",
        "--quiet",
        "--threads",
        "1",
        "--json",
        str(out_json),
    ]
    assert benchmark.main(argv) == 0
    results = json.loads(out_json.read_text())["train"]
    assert [r["model"] for r in results] == ["selecsls42b", "resnet50"]
    for r in results:
        assert "error" not in r, r
        assert r["peak_mb"] > 0 and r["median_ms"] > 0
    # Weights alone are ~130 MB (42b) and ~100 MB (resnet50) in fp32: the peak must exceed them.
    assert results[0]["peak_mb"] > 4 * results[0]["params_m"]
    (table,) = markdown_tables(capsys.readouterr().out)
    assert table[0][-1] == "peak memory vs resnet50" and table[2][-1] == "1.00x"


def test_bf16_training_step_updates_weights_in_channels_last():
    from selecsls.heads import build_classifier
    from selecsls.tools.bench.timing import measure_train_steps

    model = build_classifier("selecsls42", num_classes=4)
    before = model.heads.classification.fc.weight.detach().clone()
    times = measure_train_steps(model, 2, 32, 1, 1, torch.device("cpu"), amp="bf16")
    assert len(times) == 1 and times[0] > 0
    assert model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.heads.classification.fc.weight.dtype == torch.float32  # master weights stay fp32
    assert not torch.equal(before, model.heads.classification.fc.weight)
    with pytest.raises(ValueError, match="fp32 or bf16"):
        measure_train_steps(model, 2, 32, 1, 1, torch.device("cpu"), amp="fp8")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_modes_on_a_cpu_without_bf16_get_a_note(monkeypatch, capsys, native):
    monkeypatch.setattr(bench_suite, "cpu_has_bf16", lambda: native)
    assert benchmark.main(["--models", "selecsls42b", "--modes", "deploy", "bf16", *TINY]) == 0
    out = capsys.readouterr().out
    assert ("note: this CPU has no native bf16 (AVX-512 BF16 / AMX): bf16 run" in out) != native
    assert benchmark.main(["--models", "selecsls42b", "--modes", "deploy", *TINY]) == 0
    assert "no native bf16" not in capsys.readouterr().out  # fp32 modes need no note


def test_pose_models_resolve_and_share_the_head_geometry():
    ours, baseline = resolve_model("pose:SelecSLS-42"), resolve_model("pose:resnet50")
    assert ours.label == "pose:selecsls42" and baseline.label == "pose:resnet50"
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        got = [entry.build().eval()(x) for entry in (ours, baseline)]
    for outputs in got:
        assert outputs["heatmaps"].shape == (1, 19, 8, 12) and outputs["pafs"].shape[1] == 38
    with pytest.raises(BenchmarkError, match="pose:nope"):
        resolve_model("pose:nope")


def test_train_compile_reaches_the_child_and_the_step(monkeypatch):
    from selecsls.tools.bench import timing
    from selecsls.tools.bench import train as bench_train

    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", "boom")

    monkeypatch.setattr(bench_train.subprocess, "run", fake_run)
    args = benchmark.build_parser().parse_args(["--train-only", "--train-compile"])
    result = bench_train.train_in_subprocess("pose:selecsls42", args)
    assert "--train-compile" in seen["cmd"] and "boom" in result["error"]
    compiled = []
    monkeypatch.setattr(timing.torch, "compile", lambda m: compiled.append(m) or m)
    model = small_net(8, second_conv=True, classifier=True)
    times = timing.measure_train_steps(model, 2, 16, 1, 1, torch.device("cpu"), compile=True)
    assert compiled == [model] and len(times) == 1


def test_train_table_reports_images_per_second():
    record = {"model": "m", "batch": 64, "size": 224, "median_ms": 200.0, "q1_ms": 190.0}
    record.update(q3_ms=210.0, peak_mb=1000.0, params_m=30.0, compile=True, amp="bf16")
    text = train_table([record], None)
    (table,) = markdown_tables(text)
    assert table[0][3] == "images/s" and table[1][3] == "320"  # 64 images in 0.2 s
    assert "bf16 autocast + channels_last, torch.compile" in text


def test_sizes_take_the_demos_wxh_input(tmp_path, capsys):
    parser = benchmark.build_parser()
    assert parser.parse_args(["--sizes", "224", "512x320", "64x64"]).sizes == [224, "512x320", 64]
    for bad in ("512x", "0x320", "5x3x2"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--sizes", bad])
    argv = ["--models", "selecsls42b", "--modes", "deploy", "--sizes", "48x32", "--batches", "1"]
    argv += ["--reps", "1", "--warmup", "0", "--quiet", "--json", str(tmp_path / "out.json")]
    assert benchmark.main(argv) == 0
    assert "| 48x32 b1 |" in capsys.readouterr().out
    record = json.loads((tmp_path / "out.json").read_text())["forward"][0]
    assert record["size"] == "48x32" and record["median_ms"] > 0
