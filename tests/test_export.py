"""ONNX export: outputs equal PyTorch's at other sizes (dynamic), metadata, clear errors, and the
demo's onnxruntime backend gives the same people as the PyTorch backend."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from conftest import randomize_bn  # noqa: E402

from selecsls.heads import build_model, save_model  # noqa: E402
from selecsls.tools import demo, export  # noqa: E402
from selecsls.tools._cli import run_cli  # noqa: E402
from selecsls.tools.realtime.runtime import OnnxRunner, PoseEstimator, TorchRunner  # noqa: E402

SIZE = (96, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(pose model, checkpoint, onnx path, export errors) for a small selecsls42 pose model."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = randomize_bn(build_model({"backbone": "selecsls42", "heads": {"xnect2d": {}}}))
    model.eval()
    checkpoint = save_model(model, folder / "pose.pt")
    errors = export.export_checkpoint(str(checkpoint), str(folder / "pose.onnx"), SIZE)
    return model, checkpoint, folder / "pose.onnx", errors


def test_onnx_matches_pytorch_at_new_sizes(exported):
    model, _, path, errors = exported
    assert set(errors) == {"heatmaps", "pafs"} and max(errors.values()) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randn(2, 3, 80, 112, generator=torch.Generator().manual_seed(1))  # batch 2
    got = session.run(["heatmaps", "pafs"], {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images)
    for array, name in zip(got, ("heatmaps", "pafs")):
        reference = expected[name].numpy()
        assert array.shape == reference.shape == (2, reference.shape[1], 10, 14)
        assert np.abs(array - reference).max() <= 1e-4 * np.abs(reference).max()
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["selecsls_config"])["heads"] == {"xnect2d": {}}
    assert meta["input_size"] == "96x64"


def test_cli_reports_and_errors(exported, tmp_path, capsys):
    _, checkpoint, _, _ = exported
    out = tmp_path / "m.onnx"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = [
        ([str(tmp_path / "missing.pt"), "--output", str(out)], "not found"),
        ([str(text), "--output", str(out)], str(text)),
        (["selecsls61", "--output", str(out)], "selecsls61"),
        ([str(checkpoint), "--output", str(tmp_path / "m.pt")], "must end in .onnx"),
        ([str(checkpoint), "--output", str(tmp_path / "no" / "m.onnx")], "does not exist"),
        ([str(checkpoint), "--output", str(out), "--input-size", "96"], "512x320"),
    ]
    for argv, message in cases:
        assert run_cli(export.main, argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    # a check that cannot pass: the tool fails and writes nothing
    argv = [str(checkpoint), "--output", str(out), "--input-size", "64x48", "--rtol", "1e-12"]
    assert run_cli(export.main, argv) == 1
    assert "export check failed" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".export-*"))


def test_demo_onnx_backend_matches_pytorch(exported, tmp_path):
    model, _, path, _ = exported
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (120, 200, 3), np.uint8), (0, 0), 3)
    onnx_estimator = PoseEstimator(OnnxRunner(path), SIZE)
    torch_estimator = PoseEstimator(TorchRunner(model, precision="fp32"), SIZE)
    images, _ = torch_estimator.preprocess(frame)
    a, b = onnx_estimator.runner(images), torch_estimator.runner(images)
    for name in ("heatmaps", "pafs"):
        assert np.abs(a[name] - b[name]).max() <= 1e-4 * np.abs(b[name]).max()
    # and through the command line, with the input size from the file's metadata
    cv2.imwrite(str(tmp_path / "f.png"), frame)
    argv = ["--checkpoint", str(path), "--backend", "onnxruntime", "--input", str(tmp_path)]
    assert demo.main(argv + ["--json", str(tmp_path / "p.json"), "--headless"]) == 0
    payload = json.loads((tmp_path / "p.json").read_text())
    assert payload["input_size"] == list(SIZE) and payload["frame_count"] == 1
