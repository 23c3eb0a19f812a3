"""tools/bench/demo.py on a tiny input: every mode timed, the end-to-end comparison printed."""

from __future__ import annotations

import re

from selecsls.tools.bench import demo as demo_bench


def test_demo_bench_prints_stage_table_and_pipeline_ratio(capsys):
    argv = ["--backbone", "selecsls42b", "--size", "128x96", "--frames", "2", "--no-onnx", "--int8"]
    argv += ["--rounds", "3"]
    assert demo_bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| pytorch cpu")]
    assert len(rows) == 4 and "int8" in rows[3], out
    for row in rows:  # name + 6 stage/total numbers + 2 fps
        numbers = re.findall(r"\| (\d+\.\d)", row)
        assert len(numbers) == len(demo_bench.STAGES) + 3, row
        assert float(numbers[-1]) > 0
    assert re.search(r"  sequential: \d+\.\d, \d+\.\d, \d+\.\d fps", out), out
    assert re.search(r"  pipelined: \d+\.\d, \d+\.\d, \d+\.\d fps", out), out
    assert re.search(r"medians: sequential \d+\.\d fps, pipelined \d+\.\d fps", out), out
    assert re.search(r"pipelined / sequential: \d+\.\d\dx", out), out
    assert re.search(r"int8, sequential / sequential: \d+\.\d\dx", out), out
