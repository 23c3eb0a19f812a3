"""tools/bench/demo.py on a tiny input: every mode timed, the end-to-end comparison printed."""

from __future__ import annotations

import re

from selecsls.tools.bench import demo as demo_bench
from selecsls.tools.engine.amp import cpu_has_bf16


def test_demo_bench_prints_stage_table_and_pipeline_ratio(capsys):
    argv = ["--backbone", "selecsls42b", "--size", "128x96", "--frames", "2", "--no-onnx", "--int8"]
    argv += ["--rounds", "3", "--video-size", "160x100"]  # letterboxed frames: a real resize
    assert demo_bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "128x96 (frames 160x100)" in out, out
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


def test_network_decode_pipelined_decodes_every_frame_in_order():
    import numpy as np
    import torch

    from selecsls.datasets.synthetic_people import render_image
    from selecsls.heads import build_model
    from selecsls.heads.pose2d.codec import Pose2DCodec
    from selecsls.tools.realtime.graph import GraphRunner
    from selecsls.tools.realtime.runtime import PoseEstimator

    torch.manual_seed(0)
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}})
    runner = GraphRunner(model, Pose2DCodec(), device="cpu", precision="fp32", graph=False)
    estimator = PoseEstimator(runner, (128, 96), Pose2DCodec())
    frames, truth = [], []
    for index in range(3):  # different people in every frame: a frame decoded out of turn shows
        image, _, people = render_image(index, 0, 128, 96, 3)
        frames.append(image)
        truth.append(np.array([p["keypoints"] for p in people], np.float32).reshape(-1, 17, 3))
    fps = demo_bench.time_network_decode(estimator, frames, truth, rounds=2)
    assert set(fps) == {"sequential", "pipelined"} and all(len(v) == 2 for v in fps.values())
    assert all(value > 0 for values in fps.values() for value in values)
    inputs = [estimator.preprocess(frame) for frame in frames]
    maps = [demo_bench.truth_outputs(runner, Pose2DCodec().encode(k, (128, 96))) for k in truth]
    recorder = Recorder(runner)
    sequential = demo_bench._sequential(runner, estimator.codec, inputs, maps)
    pipelined = demo_bench._pipelined(recorder, estimator.codec, inputs, maps)
    # each frame queued once, the next one queued before it is collected, collected in order
    order = ["submit 0", "submit 1", "collect 0", "submit 2", "collect 1", "collect 2"]
    assert [f"{event} {frame}" for event, frame in recorder.events] == order
    assert len(pipelined) == 3 and sum(len(s) for _, s in sequential) >= 3
    for (want, want_scores), (got, got_scores) in zip(sequential, pipelined):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_scores, want_scores)


class Recorder:
    """A runner's submit / collect, logged with the frame each belongs to."""

    def __init__(self, runner) -> None:
        self.runner, self.events, self.submitted = runner, [], 0

    def submit(self, images):
        self.events.append(("submit", self.submitted))
        self.submitted += 1
        return self.submitted - 1, self.runner.submit(images)

    def collect(self, pending):
        frame, inner = pending
        self.events.append(("collect", frame))
        return self.runner.collect(inner)
