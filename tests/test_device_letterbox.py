"""The device letterbox gives the host letterbox's canvas (to one grey level) and, in the graph
runner, the host path's people; the CUDA graph that holds it is checked on the CPU for
capture-safe ops (the capture itself where CUDA is present)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from selecsls.datasets.augment import PAD_VALUE
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.slots import has_slots
from selecsls.tools.realtime.graph import GraphRunner, use_device_letterbox
from selecsls.tools.realtime.letterbox import DeviceLetterbox, resize_weights
from selecsls.tools.realtime.runtime import PoseEstimator, TorchRunner
from tests.test_graph_runner import (
    INPUT,
    NOT_CAPTURABLE,
    OpRecorder,
    assert_same_people,
    crowded,
)
from tests.test_peaks_torch import coco_maps

SIZE = (512, 320)  # the demo's input size (W, H)


class CanvasRunner:
    """Takes the host's uint8 canvas, so `preprocess` hands it over as it is."""

    takes_uint8 = True


@pytest.fixture(scope="module")
def maps() -> dict[str, np.ndarray]:
    return coco_maps()


@pytest.fixture(scope="module")
def photo(shared_data) -> np.ndarray:
    image = cv2.imread(str(shared_data / "coco_sample" / "000000000785.jpg"))
    assert image is not None
    return image


def host_canvas(frame: np.ndarray, size=SIZE) -> np.ndarray:
    images, _ = PoseEstimator(CanvasRunner(), size).preprocess(frame)
    return images[0].numpy()


# (W, H) frames: a webcam, full HD, an exact 2x, the input size, odd shrinks, and upscales
SHRINKS = [(1280, 720), (1920, 1080), (1024, 640), (512, 320), (640, 480), (517, 333)]
UPSCALES = [(320, 240), (200, 100), (100, 300)]


@pytest.mark.parametrize("frame_size", SHRINKS + UPSCALES)
def test_device_letterbox_gives_the_host_canvas(photo, frame_size):
    rng = np.random.default_rng(frame_size[0])
    noise = rng.integers(0, 256, (frame_size[1], frame_size[0], 3), dtype=np.uint8)
    for frame in (cv2.resize(photo, frame_size, interpolation=cv2.INTER_CUBIC), noise):
        want = host_canvas(frame)
        got = DeviceLetterbox(SIZE)(torch.from_numpy(frame)[None])
        assert got.dtype == torch.uint8 and tuple(got.shape) == (1, SIZE[1], SIZE[0], 3)
        diff = np.abs(got[0].numpy().astype(int) - want.astype(int))
        assert diff.max() <= 1  # float rounding against cv2's fixed point
        # true area averaging: exact but for float ties; cv2's upscale taps are fixed point
        assert diff.astype(bool).mean() < (0.002 if frame_size in SHRINKS else 0.1)
    new_w = round(frame_size[0] * min(SIZE[0] / frame_size[0], SIZE[1] / frame_size[1]))
    if new_w < SIZE[0]:  # the padding is PAD_VALUE, RGB as the canvas
        assert (got[0, :, new_w:].numpy() == np.array(PAD_VALUE, np.uint8)).all()


def test_exact_where_cv2_averages_whole_pixels(photo):
    frame = cv2.resize(photo, (1024, 640))
    got = DeviceLetterbox(SIZE)(torch.from_numpy(frame)[None])[0].numpy()
    np.testing.assert_array_equal(got, host_canvas(frame))  # halves round up, as cv2's


def test_resize_weights_are_averages():
    for in_size, out_size in (((1280, 720), (512, 288)), ((320, 240), (427, 320))):
        rows, columns = resize_weights(in_size, out_size)
        assert rows.shape == (out_size[1], in_size[1]) and columns.shape == (
            out_size[0],
            in_size[0],
        )
        for weights in (rows, columns):
            assert (weights >= 0).all()
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)


def test_a_batch_of_frames_letterboxes_each(photo):
    frames = np.stack([cv2.resize(photo, (640, 480)), cv2.resize(photo[::-1], (640, 480))])
    got = DeviceLetterbox(SIZE)(torch.from_numpy(frames))
    for n in range(2):
        one = DeviceLetterbox(SIZE)(torch.from_numpy(frames[n])[None])[0]
        torch.testing.assert_close(got[n], one, rtol=0, atol=0)


def test_graph_runner_letterboxing_frames_decodes_the_host_people(maps):
    model = crowded(maps)  # its maps do not depend on the input: same people if same matrix
    runner = GraphRunner(model, Pose2DCodec(), "cpu", "fp32", graph=False, letterbox=INPUT)
    assert runner.takes_frames and "device-letterbox" in runner.description
    estimator = PoseEstimator(runner, INPUT, Pose2DCodec())
    frame = np.random.default_rng(1).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    images, matrix = estimator.preprocess(frame)
    assert tuple(images.shape) == (1, 600, 800, 3)  # the frame itself goes to the device
    np.testing.assert_allclose(matrix, estimator.resize.matrix(800, 600))
    assert has_slots(estimator.infer(frame).outputs)
    reference = PoseEstimator(TorchRunner(model, "cpu", "fp32"), INPUT, Pose2DCodec())
    got, want = estimator(frame), reference(frame)
    assert len(want.scores) >= 2
    assert_same_people((got.keypoints, got.scores), (want.keypoints, want.scores))


def test_the_letterboxing_graph_step_is_capture_safe():
    from selecsls.heads import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": "selecsls42", "heads": {"xnect2d": {}}})
    runner = GraphRunner(model, Pose2DCodec(), "cpu", "fp32", graph=False, letterbox=(96, 64))
    frame = torch.from_numpy(np.random.default_rng(2).integers(0, 255, (90, 160, 3), np.uint8))
    with torch.inference_mode():
        runner.step(frame[None])  # the warm-up makes this frame size's weights, as before a capture
        recorder = OpRecorder()
        with recorder.mode:
            outputs = runner.step(frame[None])
    assert has_slots(outputs) and "matmul" in {n.split(".")[0] for n in recorder.names}
    bad = sorted({n for n in recorder.names if n.split(".")[0] in NOT_CAPTURABLE})
    assert not bad, bad


def test_use_device_letterbox_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not use_device_letterbox("auto", True, "auto")  # no CUDA: cv2 on the host
    assert use_device_letterbox("auto", True, "cuda")
    assert not use_device_letterbox("auto", False, "cuda")  # no graph runner, nothing to hold it
    assert use_device_letterbox("device", True, "cpu")
    assert not use_device_letterbox("host", True, "cuda")
    with pytest.raises(ValueError, match="--letterbox device runs in the graph runner"):
        use_device_letterbox("device", False, "cuda")
    with pytest.raises(ValueError, match="unknown --letterbox 'gpu'"):
        use_device_letterbox("gpu", True, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_letterbox_equals_eager(maps):
    model = crowded(maps)
    graphed = GraphRunner(model, Pose2DCodec(), "cuda", "fp32", letterbox=INPUT)
    eager = GraphRunner(model, Pose2DCodec(), "cuda", "fp32", graph=False, letterbox=INPUT)
    frame = torch.from_numpy(np.random.default_rng(3).integers(0, 255, (720, 1280, 3), np.uint8))
    for _ in range(3):  # capture, then replays
        got, want = graphed(frame[None]), eager(frame[None])
        for name in got:
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5)
    canvas = graphed.step.letterbox(frame[None].cuda())[0].cpu().numpy()
    assert np.abs(canvas.astype(int) - host_canvas(frame.numpy(), INPUT).astype(int)).max() <= 1


def test_demo_letterbox_device_gives_the_host_people(tmp_path, monkeypatch):
    from selecsls.heads import build_model, save_model
    from selecsls.tools import demo

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):  # twice the input size: the device's averages equal cv2's exactly
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (192, 320, 3), np.uint8))
    torch.manual_seed(0)
    checkpoint = tmp_path / "random.pt"
    save_model(build_model({"backbone": "selecsls42", "heads": {"xnect2d": {}}}), checkpoint)
    argv = ["--checkpoint", str(checkpoint), "--input", str(folder), "--headless"]
    argv += ["--input-size", "160x96", "--threads", "1", "--device", "cpu", "--precision", "fp32"]
    people = {}
    threads = torch.get_num_threads()
    try:
        for name, flags in (("device", ["--graph", "on", "--letterbox", "device"]), ("host", [])):
            out = tmp_path / f"{name}.json"
            assert demo.main([*argv, *flags, "--json", str(out)]) == 0
            frames = json.loads(out.read_text())["frames"]
            people[name] = [[p["keypoints"] for p in f["people"]] for f in frames]
        with pytest.raises(ValueError, match="--letterbox device runs in the graph runner"):
            demo.main([*argv, "--letterbox", "device", "--json", str(tmp_path / "x.json")])
    finally:
        torch.set_num_threads(threads)
    assert len(people["device"]) == 2
    assert sum(map(len, people["host"])) > 0  # so that the comparison below compares people
    for got, want in zip(people["device"], people["host"]):
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-3)


def test_letterbox_bench_prints_a_row_per_frame_size(capsys):
    from selecsls.tools.bench import letterbox as bench

    assert bench.main(["--size", "128x96", "--frames", "320x200", "96x64", "--reps", "2"]) == 0
    out = capsys.readouterr().out
    assert "| frame | host (cv2) ms | device (cpu) ms | device / host |" in out
    for frame in ("320x200", "96x64"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {frame} |"))
        host, device, ratio = row.strip("|").split("|")[1:]
        assert float(host) > 0 and float(device) > 0 and ratio.strip().endswith("x")
    with pytest.raises(SystemExit):
        bench.main(["--frames", "640by480"])
    assert "--frames" in capsys.readouterr().err
