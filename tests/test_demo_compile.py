"""The demo's compiled mode (`--compile`, TorchRunner(compile=True)): same outputs as the eager
network, the CLI runs with it, and a compile failure falls back to the eager network."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from selecsls.heads import build_model, save_model
from selecsls.tools._cli import run_cli
from selecsls.tools.demo import main as demo_main
from selecsls.tools.realtime import runtime as demo_runtime
from selecsls.tools.realtime.runtime import TorchRunner

SIZE = (96, 64)  # W x H: compile time depends on the graph, not on the image size


def pose_model():
    torch.manual_seed(0)
    return build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}}).eval()


def test_compiled_runner_matches_eager():
    model = pose_model()
    eager = TorchRunner(model, "cpu", "fp32")
    compiled = TorchRunner(model, "cpu", "fp32", compile=True)
    assert compiled.warm_up(SIZE) > 0
    assert compiled.compiled and compiled.description.endswith("compiled")
    images = torch.randn(1, 3, SIZE[1], SIZE[0])
    want = eager(images)
    with torch.profiler.profile() as profile:
        got = compiled(images)
    ops = {event.key for event in profile.key_averages()}
    if torch.backends.mkldnn.is_available():  # frozen weights: oneDNN convs with fused ReLUs
        assert "mkldnn::_convolution_pointwise" in ops and "aten::mkldnn_convolution" not in ops
    assert set(got) == {"heatmaps", "pafs"}
    for key in want:
        assert got[key].shape == want[key].shape == (1, want[key].shape[1], 8, 12)
        scale = np.abs(want[key]).max()
        assert np.abs(got[key] - want[key]).max() <= 1e-3 * scale, key


def test_failed_compile_falls_back_to_eager(monkeypatch, capsys):
    def broken_compile(model, **kwargs):
        def run(images):
            raise RuntimeError("no C++ compiler found\nmore lines")

        return run

    monkeypatch.setattr(demo_runtime.torch, "compile", broken_compile)
    runner = TorchRunner(pose_model(), "cpu", "bf16", compile=True)
    runner.warm_up(SIZE)
    assert "torch.compile failed (no C++ compiler found); running uncompiled" in (
        capsys.readouterr().err
    )
    assert not runner.compiled and not runner.description.endswith("compiled")
    outputs = runner(torch.zeros(1, 3, SIZE[1], SIZE[0]))
    assert outputs["heatmaps"].dtype == np.float32 and np.isfinite(outputs["heatmaps"]).all()


def test_bf16_weights_give_the_autocast_numbers():
    """bf16 runs with bf16 weights, not autocast (which re-casts every weight every frame)."""
    model = pose_model()
    runner = TorchRunner(model, "cpu", "bf16")
    assert all(p.dtype == torch.bfloat16 for p in runner.model.parameters())
    images = torch.randn(1, 3, SIZE[1], SIZE[0])
    reference = TorchRunner(model, "cpu", "fp32").model
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = reference(images.contiguous(memory_format=torch.channels_last))
    got = runner(images)
    for key in ("heatmaps", "pafs"):
        np.testing.assert_array_equal(got[key], want[key].float().numpy())


def test_cli_compile(tmp_path, capsys, monkeypatch):
    """The flag's plumbing (the compile itself is tested above: a second one costs ~30 s)."""
    compiled = []

    def fake_compile(model, **kwargs):
        compiled.append(kwargs)
        return model

    monkeypatch.setattr(demo_runtime.torch, "compile", fake_compile)
    checkpoint = tmp_path / "random.pt"
    save_model(pose_model(), checkpoint)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((64, 96, 3), 40 * index, np.uint8))
    people = tmp_path / "people.json"
    argv = ["--checkpoint", str(checkpoint), "--input", str(folder), "--headless"]
    argv += ["--json", str(people), "--input-size", "96x64", "--compile", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert demo_main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "compiling the network for 96x64" in out and "compiled" in out
    assert "3 frames (0 unreadable skipped)" in out and people.is_file()
    assert compiled == [{"dynamic": False}]
    onnx = ["--checkpoint", str(checkpoint), "--input", str(folder), "--headless"]
    onnx += ["--json", str(people), "--backend", "onnxruntime", "--compile"]
    assert run_cli(demo_main, onnx) == 2
    assert "--compile is for the pytorch backend" in capsys.readouterr().err
