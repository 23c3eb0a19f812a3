"""int8 inference (tools/deploy/quantize.py): accuracy against fp32, the layers kept in float, the
outlier-robust calibration, the demo's and eval's int8 options and their errors."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_bn
from torch import nn

from selecsls.datasets.synthetic_people import render_image
from selecsls.heads import build_model, save_model
from selecsls.tools import demo
from selecsls.tools._cli import run_cli
from selecsls.tools.deploy import quantize
from selecsls.tools.deploy.quantize import Int8Error, Int8Runner, letterboxed, quantize_int8
from selecsls.tools.realtime.runtime import TorchRunner

SIZE = (128, 96)  # network input W x H


def images(count: int, seed: int = 7) -> list[np.ndarray]:
    return [render_image(i, seed, 160, 120, 3)[0] for i in range(count)]


def relative_errors(model: nn.Module, other: nn.Module, inputs: torch.Tensor) -> dict:
    with torch.no_grad():
        want, got = model(inputs), other(inputs)
    return {k: float((got[k] - want[k]).norm() / want[k].norm()) for k in want}


@pytest.fixture(scope="module")
def pose_model() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}})).eval()


@pytest.fixture(scope="module")
def calibration() -> list[torch.Tensor]:
    return [letterboxed(image, SIZE) for image in images(4)]


def test_int8_outputs_follow_fp32(pose_model, calibration):
    """Random weights with random BN statistics: ~8% relative error measured; the quantized
    transposed convolution alone made it ~100% (see the module docstring of quantize.py)."""
    quantized = quantize_int8(pose_model, calibration)
    unseen = letterboxed(images(1, seed=8)[0], SIZE)
    errors = relative_errors(pose_model, quantized, unseen)
    assert set(errors) == {"heatmaps", "pafs"}
    assert max(errors.values()) < 0.2, errors
    modules = dict(quantized.named_modules())
    assert type(modules["heads.xnect2d.trunk.1.0"]) is nn.ConvTranspose2d  # left in float
    assert type(modules["heads.xnect2d.predictor.1"]) is nn.Conv2d  # the output layer too
    int8_convs = [m for m in modules.values() if "quantized" in type(m).__module__]
    assert len(int8_convs) > 30  # the backbone is int8
    # any input size, as the demo's letterbox may change
    with torch.no_grad():
        assert quantized(torch.zeros(1, 3, 64, 96))["heatmaps"].shape == (1, 19, 8, 12)


def test_3d_head_quantizes_too():
    torch.manual_seed(1)
    model = randomize_bn(build_model({"backbone": "selecsls42", "heads": {"xnect3d": {}}}))
    inputs = [letterboxed(image, SIZE) for image in images(3)]
    errors = relative_errors(model.eval(), quantize_int8(model, inputs), inputs[0])
    assert set(errors) == {"heatmaps", "pafs", "locmaps"}
    assert max(errors.values()) < 0.2, errors
    assert quantize.output_layers(model) == [
        "heads.xnect3d.predictor.1",
        "heads.xnect3d.predictor3d.2",
    ]


def test_calibration_range_ignores_an_outlier_image():
    """torch's default observer takes the union of all batches' ranges; one image 100x brighter
    inside would then leave the others a few uint8 steps."""
    observer = quantize._fx_quantization()[2].global_qconfig.activation()
    for _ in range(7):
        observer(torch.rand(1, 8, 4, 4))
    observer(torch.rand(1, 8, 4, 4) * 100)
    scale, _ = observer.calculate_qparams()
    assert float(observer.max_val) < 1.5
    assert float(scale) < 1.5 / 100


def test_runner_calibrates_on_the_first_frames(pose_model, capsys):
    fallback = TorchRunner(pose_model, "cpu", "fp32")
    runner = Int8Runner(pose_model, fallback, frames=2)
    frames = [letterboxed(image, SIZE) for image in images(3)]
    first = runner(frames[0])
    assert np.array_equal(first["heatmaps"], fallback(frames[0])["heatmaps"])  # float meanwhile
    assert "calibrating" in runner.description and runner.quantized is None
    runner(frames[1])
    assert runner.quantized is not None and runner.description == "pytorch cpu int8 (x86)"
    assert "int8: calibrated on 2 frames" in capsys.readouterr().out
    third, want = runner(frames[2]), fallback(frames[2])
    assert not np.array_equal(third["pafs"], want["pafs"])  # now the int8 network
    error = np.linalg.norm(third["pafs"] - want["pafs"]) / np.linalg.norm(want["pafs"])
    assert error < 0.2


def test_missing_fx_quantization_is_a_clear_error(monkeypatch, pose_model, calibration):
    monkeypatch.setitem(sys.modules, "torch.ao.quantization.quantize_fx", None)
    with pytest.raises(Int8Error, match="lacks"):
        quantize_int8(pose_model, calibration)
    with pytest.raises(ValueError, match="at least one image"):
        quantize_int8(pose_model, [])


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    """(random-weight checkpoint, a 6-frame video, a folder of 3 calibration images)."""
    root = tmp_path_factory.mktemp("int8_demo")
    torch.manual_seed(0)
    checkpoint = root / "pose.pt"
    save_model(build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}}), checkpoint)
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for image in images(6):
        writer.write(image)
    writer.release()
    folder = root / "calibration"
    folder.mkdir()
    for index, image in enumerate(images(3, seed=9)):
        cv2.imwrite(str(folder / f"{index}.jpg"), image)
    (folder / "notes.txt").write_text("not an image")
    return checkpoint, video, folder


def run_demo(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return run_cli(demo.main, [*argv, "--headless", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide


def test_demo_int8_with_a_calibration_folder(demo_files, tmp_path, capsys):
    checkpoint, video, folder = demo_files
    out = tmp_path / "people.json"
    argv = ["--checkpoint", str(checkpoint), "--input", str(video), "--input-size", "128x96"]
    argv += ["--precision", "int8", "--calibration", str(folder), "--json", str(out)]
    assert run_demo(argv) == 0
    printed = capsys.readouterr().out
    assert f"int8: calibrated on 3 images of {folder}" in printed
    assert "-> pytorch cpu int8 (x86), input 128x96" in printed
    assert json.loads(out.read_text())["frame_count"] == 6


def test_demo_int8_errors_are_clear(demo_files, tmp_path, capsys):
    checkpoint, video, folder = demo_files
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--checkpoint", str(checkpoint), "--input", str(video), "--json", str(tmp_path / "j")]
    cases = [
        (["--precision", "int8", "--device", "cuda"], "CPU only"),
        (["--precision", "int8", "--compile"], "--compile is for the bf16/fp32 modes"),
        (["--calibration", str(folder)], "--calibration is for --precision int8"),
        (["--precision", "int4"], "unknown precision 'int4'"),
        (["--precision", "int8", "--calibration", str(tmp_path / "nope")], "folder not found"),
        (["--precision", "int8", "--calibration", str(empty)], "holds no images"),
        (["--precision", "int8", "--backend", "onnxruntime"], "for the pytorch backend"),
    ]
    for extra, message in cases:
        assert run_demo([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "j").exists()
