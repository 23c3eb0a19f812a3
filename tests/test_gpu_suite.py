"""The prepared GPU script: every step is a command our tools accept, the budget skips what does
not fit, and without CUDA it says so. (The measurements themselves need a GPU machine.)"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from selecsls.tools import benchmark
from selecsls.tools.bench import conv_relu, cpu_bound, gpu_suite
from selecsls.tools.bench import demo as bench_demo
from selecsls.tools.bench import letterbox as bench_letterbox
from selecsls.tools.bench import loader as bench_loader

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {
    "selecsls.tools.benchmark": benchmark.build_parser,
    "selecsls.tools.bench.demo": bench_demo.build_parser,
    "selecsls.tools.bench.loader": bench_loader.build_parser,
    "selecsls.tools.bench.cpu_bound": cpu_bound.build_parser,
    "selecsls.tools.bench.conv_relu": conv_relu.build_parser,
    "selecsls.tools.bench.letterbox": bench_letterbox.build_parser,
}


def test_every_step_parses_with_its_tool(tmp_path):
    found = gpu_suite.steps(str(tmp_path))
    assert len({s.name for s in found}) == len(found) >= 8
    for step in found:
        assert step.argv[0] == "-m", step
        module, args = step.argv[1], list(step.argv[2:])
        if module == "pytest":
            files = [a for a in args if a.endswith(".py")]
            assert files and all((ROOT / f).is_file() for f in files)
            continue
        parsed = PARSERS[module]().parse_args(args)  # SystemExit on an option they lack
        # GPU steps run on CUDA; the CPU ones (for the host, an AMX Xeon) on two pinned cores
        device = "cpu" if step.cpus else "cuda"
        assert getattr(parsed, "device", device) == device, step
        assert step.cpus is None or (len(step.cpus) == 2 and parsed.threads == 2), step
    models = {m for s in found if "--models" in s.argv for m in s.argv}
    assert {"pose:selecsls60", "pose:resnet50", "resnet50"} <= models


def test_dry_run_lists_the_steps(capsys):
    assert gpu_suite.main(["--dry-run", "--budget", "100"]) == 0
    out = capsys.readouterr().out
    assert "forward: seed table with the graph mode" in out and "--budget 100" in out


def test_budget_skips_what_does_not_fit(tmp_path, monkeypatch):
    quick = gpu_suite.Step("quick", ("-c", "print('hello')"), 1)
    slow = gpu_suite.Step("slow", ("-c", "print('never')"), 10_000)
    monkeypatch.setattr(gpu_suite, "steps", lambda out: [quick, slow])
    records = gpu_suite.run_all(60, tmp_path)
    assert records[0]["status"] == "ok" and records[1]["status"].startswith("skipped")
    assert json.loads((tmp_path / "summary.json").read_text()) == records
    log = (tmp_path / "gpu_suite.log").read_text()
    assert "hello" in log and "never" not in log


def test_without_cuda_it_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_suite.main(["--out", "unused"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_a_pinned_step_runs_on_its_cores(tmp_path, monkeypatch):
    import os

    core = min(os.sched_getaffinity(0))
    show = "import os; print('cores', sorted(os.sched_getaffinity(0)))"
    pinned = gpu_suite.Step("pinned", ("-c", show), 1, (core, 10_000))  # a core it lacks: ignored
    monkeypatch.setattr(gpu_suite, "steps", lambda out: [pinned])
    assert gpu_suite.run_all(60, tmp_path)[0]["status"] == "ok"
    log = (tmp_path / "gpu_suite.log").read_text()
    assert f"cores [{core}]" in log and f"# on cores {core},10000" in log
