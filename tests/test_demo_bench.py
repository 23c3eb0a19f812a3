"""tools/bench/demo.py on a tiny input: every mode timed, the end-to-end comparison printed."""

from __future__ import annotations

import re

from selecsls.tools.bench import demo as demo_bench
from selecsls.tools.engine.amp import cpu_has_bf16


def test_demo_bench_prints_stage_table_and_pipeline_ratio(capsys):
    argv = ["--backbone", "selecsls42b", "--size", "128x96", "--frames", "2", "--no-onnx", "--int8"]
    argv += ["--rounds", "3"]
    assert demo_bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| pytorch cpu")]
    # bf16 is timed only where the CPU computes it natively (elsewhere it is fallback kernels)
    native = cpu_has_bf16()
    assert len(rows) == 3 + native and "int8" in rows[-1], out
    assert any(" bf16" in row for row in rows) == native, out
    fastest = "bf16" if native else "fp32"
    assert f"end to end (demo loop, wall clock, pytorch cpu {fastest}, BN folded" in out, out
    for row in rows:  # name + 6 stage/total numbers + 2 fps
        numbers = re.findall(r"\| (\d+\.\d)", row)
        assert len(numbers) == len(demo_bench.STAGES) + 3, row
        assert float(numbers[-1]) > 0
    assert re.search(r"  sequential: \d+\.\d, \d+\.\d, \d+\.\d fps", out), out
    assert re.search(r"  pipelined: \d+\.\d, \d+\.\d, \d+\.\d fps", out), out
    assert re.search(r"medians: sequential \d+\.\d fps, pipelined \d+\.\d fps", out), out
    assert re.search(r"pipelined / sequential: \d+\.\d\dx", out), out
    assert re.search(r"int8, sequential / sequential: \d+\.\d\dx", out), out
