"""The demo end to end on a generated video of synthetic people, headless.

An oracle network (its forward returns the codec's encoding of the known people of each frame)
goes through the same runner, decoder, tracker, drawing and writers as a real model, so the test
can check what is drawn and tracked against the ground truth. A random-weight checkpoint then
goes through the real command line once (plumbing: frames in = frames out, well-formed JSON).
"""

from __future__ import annotations

import ctypes
import json
import os
import threading

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from selecsls.datasets.augment import EvalResize
from selecsls.datasets.synthetic_people import render_image
from selecsls.heads import build_model, save_model
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.tools import demo
from selecsls.tools._cli import run_cli
from selecsls.tools.realtime import app
from selecsls.tools.realtime import runtime as demo_runtime
from selecsls.tools.realtime.runtime import PoseEstimator, TorchRunner
from selecsls.tools.realtime.sources import Frame, open_source
from selecsls.tools.realtime.tracking import Tracker

SIZE = (384, 256)  # frame W x H
INPUT = (320, 224)  # network input: letterboxing scales the frame
FRAMES = 10
SHIFT = 4  # pixels per frame: the people walk right


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic image with at least 2 labelled people: (image, COCO keypoints (P, 17, 3),
    3D joints (P, 21, 3) mm)."""
    for index in range(50):
        image, _, people = render_image(index, 5, *SIZE, 3)
        people = [p for p in people if p["num_keypoints"] >= 8]
        if len(people) >= 2:
            keypoints = np.array([p["keypoints"] for p in people], np.float32).reshape(-1, 17, 3)
            joints = np.array([p["keypoints_3d"] for p in people], np.float32)
            return image, keypoints, joints
    raise AssertionError("no synthetic image with 2 people")


def shifted(keypoints: np.ndarray, t: int) -> np.ndarray:
    out = keypoints.copy()
    out[..., 0] += SHIFT * t
    out[(out[..., 0] > SIZE[0] - 1) | (out[..., 2] == 0)] = 0
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(video path, per-frame keypoints list, 3D joints): the scene panned right."""
    image, keypoints, joints = scene()
    path = tmp_path_factory.mktemp("clip") / "people.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE)
    truth = []
    for t in range(FRAMES):
        matrix = np.float32([[1, 0, SHIFT * t], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, matrix, SIZE, borderMode=cv2.BORDER_REPLICATE))
        truth.append(shifted(keypoints, t))
    writer.release()
    return path, truth, joints


class Oracle(nn.Module):
    """A 'network' whose outputs are the codec's encoding of the known people of frame t."""

    def __init__(self, truth: list[np.ndarray], extra_3d: bool = False) -> None:
        super().__init__()
        self.truth, self.extra_3d, self.t = truth, extra_3d, 0
        self.matrix = EvalResize(INPUT).matrix(*SIZE)
        self.codec = Pose2DCodec()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        assert images.shape == (1, 3, INPUT[1], INPUT[0])
        people = self.truth[self.t].copy()
        people[..., :2] = people[..., :2] * self.matrix[0, 0] + self.matrix[:, 2]
        self.t += 1
        maps = self.codec.encode(people, INPUT)
        out = {k: torch.from_numpy(maps[k])[None] for k in ("heatmaps", "pafs")}
        if self.extra_3d:
            out["test3d"] = torch.zeros(1, 1, 1, 1)
        return out


def read_video(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_oracle_video_tracked_and_drawn(clip, tmp_path):
    path, truth, _ = clip
    estimator = PoseEstimator(TorchRunner(Oracle(truth)), INPUT)
    options = app.Options(str(tmp_path / "out.mp4"), str(tmp_path / "people.json"))
    summary = app.run(estimator, open_source(str(path)), Tracker(), options)
    assert summary["frames"] == FRAMES and summary["skipped"] == 0

    inputs, outputs = read_video(path), read_video(tmp_path / "out.mp4")
    assert len(outputs) == FRAMES and outputs[0].shape == inputs[0].shape
    for t in range(FRAMES):
        changed = np.abs(outputs[t].astype(int) - inputs[t].astype(int)).max(-1) > 80
        changed[:40, :200] = False  # the FPS counter
        near = np.zeros_like(changed)
        for person in truth[t]:
            found = person[person[:, 2] > 0, :2]
            (x0, y0), (x1, y1) = found.min(0) - 15, found.max(0) + 15
            box = changed[max(int(y0), 0) : int(y1), max(int(x0), 0) : int(x1)]
            assert box.sum() > 30, f"frame {t}: no skeleton drawn on a person"
            near[max(int(y0), 0) : int(y1), max(int(x0), 0) : int(x1)] = True
        assert changed[~near].sum() <= 0.02 * changed.sum() + 5, f"frame {t}: drawing off people"

    frames = json.loads((tmp_path / "people.json").read_text())["frames"]
    assert len(frames) == FRAMES
    ids_of_person: dict[int, set] = {}
    for t, record in enumerate(frames):
        assert len(record["people"]) == len(truth[t])
        for person in record["people"]:
            keypoints = np.array(person["keypoints"])
            errors = [keypoint_error(keypoints, gt) for gt in truth[t]]
            assert min(errors) < 8.0, f"frame {t}: decoded person far from every true person"
            ids_of_person.setdefault(int(np.argmin(errors)), set()).add(person["id"])
    # every true person keeps one id, and different people have different ids
    assert all(len(ids) == 1 for ids in ids_of_person.values()), ids_of_person
    assert len(set.union(*ids_of_person.values())) == len(truth[0])


def keypoint_error(keypoints: np.ndarray, truth: np.ndarray) -> float:
    both = (keypoints[:, 2] > 0) & (truth[:, 2] > 0)
    if not both.any():
        return float("inf")
    return float(np.linalg.norm(keypoints[both, :2] - truth[both, :2], axis=1).mean())


def test_3d_hook_adds_panel_and_json(clip, tmp_path, monkeypatch):
    path, truth, joints = clip

    def readout(outputs, keypoints, transform):
        assert outputs["test3d"].shape == (1, 1, 1) and transform.shape == (2, 3)
        return np.repeat(joints[:1], len(keypoints), axis=0)

    monkeypatch.setitem(demo_runtime.POSE3D_READOUTS, "test3d", readout)
    estimator = PoseEstimator(TorchRunner(Oracle(truth, extra_3d=True)), INPUT)
    options = app.Options(str(tmp_path / "out.avi"), str(tmp_path / "p.json"), max_frames=3)
    assert app.run(estimator, open_source(str(path)), Tracker(), options)["frames"] == 3
    outputs = read_video(tmp_path / "out.avi")
    assert len(outputs) == 3
    assert outputs[0].shape == (SIZE[1], SIZE[0] + SIZE[1], 3)  # square 3D panel on the right
    panel = outputs[0][:, SIZE[0] :]
    assert (panel.max(-1) > 120).sum() > 100  # skeleton lines drawn on the dark panel
    people = json.loads((tmp_path / "p.json").read_text())["frames"][0]["people"]
    assert np.allclose(people[0]["keypoints_3d"], joints[0], atol=0.06)


@pytest.mark.parametrize("skeleton, count", [("coco17", 17), ("crowdpose14", 14)])
def test_cli_random_checkpoint_end_to_end(clip, tmp_path, capsys, skeleton, count):
    # a model of another skeleton: decoded, tracked (its own sigmas), drawn and written as such
    path = clip[0]
    torch.manual_seed(0)
    checkpoint = tmp_path / "random.pt"
    head = {} if skeleton == "coco17" else {"skeleton": skeleton}
    save_model(build_model({"backbone": "selecsls42", "heads": {"xnect2d": head}}), checkpoint)
    video, people = tmp_path / "o.mp4", tmp_path / "o.json"
    argv = ["--checkpoint", str(checkpoint), "--input", str(path), "--input-size", "160x96"]
    argv += ["--output", str(video), "--json", str(people), "--headless", "--threads", "1"]
    threads = torch.get_num_threads()
    try:  # 1 thread: on a busy 2-core machine 2 threads spin-wait (see docs/demo.md)
        assert demo.main(argv) == 0
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide
    assert f"{FRAMES} frames (0 unreadable skipped)" in capsys.readouterr().out
    assert len(read_video(video)) == FRAMES
    payload = json.loads(people.read_text())
    assert payload["frame_count"] == FRAMES and len(payload["frames"]) == FRAMES
    assert payload["input_size"] == [160, 96] and len(payload["keypoint_names"]) == count
    for t, record in enumerate(payload["frames"]):
        assert record["frame"] == t and isinstance(record["people"], list)
        for person in record["people"]:
            assert np.array(person["keypoints"]).shape == (count, 3)


def test_cli_errors_are_clear(clip, tmp_path, capsys):
    path = str(clip[0])
    classifier = tmp_path / "classifier.pt"
    save_model(build_model({"backbone": "selecsls42", "heads": {}}), classifier)
    missing = str(tmp_path / "missing.pt")
    out_json = str(tmp_path / "j.json")
    cases = [
        ([missing, "--input", str(tmp_path / "nope.mp4")], "input not found"),
        ([missing, "--input", path], "checkpoint not found"),
        ([missing, "--input", path, "--backend", "tensorrt"], "unknown backend"),
        ([missing, "--input", path, "--input-size", "big"], "512x320"),
        ([missing, "--input", path, "--output", str(tmp_path / "x" / "o.mp4")], "does not exist"),
        ([str(classifier), "--input", path], "no 2D pose head"),
        ([str(tmp_path / "m.onnx"), "--input", path, "--backend", "onnxruntime"], "not found"),
    ]
    for argv, message in cases:
        code = run_cli(demo.main, ["--checkpoint", *argv, "--json", out_json, "--headless"])
        assert code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert run_cli(demo.main, ["--checkpoint", missing, "--input", path, "--headless"]) == 2
    assert "--output" in capsys.readouterr().err  # nothing to show or write
    assert not (tmp_path / "j.json").exists()


class ThreadRecorder(Oracle):
    """Notes which threads ran the network."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.threads = getattr(self, "threads", set()) | {threading.get_ident()}
        return super().forward(images)


def test_pipelined_run_equals_sequential_run(clip, tmp_path):
    """The network thread (default) changes when frames are processed, not what comes out."""
    path, truth, _ = clip
    records = {}
    for pipeline in (True, False):
        network = ThreadRecorder(truth)
        estimator = PoseEstimator(TorchRunner(network, fuse=False), INPUT)  # no copy
        json_path = tmp_path / f"people_{pipeline}.json"
        options = app.Options(json_path=str(json_path), pipeline=pipeline)
        summary = app.run(estimator, open_source(str(path)), Tracker(), options)
        assert summary["frames"] == FRAMES
        records[pipeline] = json.loads(json_path.read_text())["frames"]
        on_main = network.threads == {threading.get_ident()}
        assert on_main != pipeline, "the network runs in its own thread exactly when pipelined"
    assert records[True] == records[False]
    assert sum(len(f["people"]) for f in records[True]) >= 2 * FRAMES


class FailingNetwork(Oracle):
    """Raises at frame `fail_at`, as a network running out of memory would."""

    fail_at = 3

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.t == self.fail_at:
            raise RuntimeError("network failed on purpose")
        return super().forward(images)


def test_network_error_in_the_pipeline_thread_reaches_the_caller(clip, tmp_path):
    path, truth, _ = clip
    estimator = PoseEstimator(TorchRunner(FailingNetwork(truth)), INPUT)
    options = app.Options(json_path=str(tmp_path / "people.json"))
    with pytest.raises(RuntimeError, match="on purpose"):
        app.run(estimator, open_source(str(path)), Tracker(), options)


def test_pipeline_choice():
    class Runner:
        def __init__(self, device: str, description: str = "pytorch") -> None:
            self.device, self.description = torch.device(device), description

    graph = PoseEstimator(Runner("cuda", "pytorch cuda fp16 cuda-graph device-decode"), INPUT)
    eager_gpu = PoseEstimator(Runner("cuda", "pytorch cuda fp16, BN folded"), INPUT)
    cpu = PoseEstimator(Runner("cpu"), INPUT)
    onnx_gpu = PoseEstimator(Runner("cpu", "onnxruntime CUDAExecutionProvider"), INPUT)
    assert demo.use_pipeline("auto", graph) and demo.use_pipeline("auto", onnx_gpu)
    assert not demo.use_pipeline("off", graph) and demo.use_pipeline("on", cpu)
    with (
        pytest.MonkeyPatch.context() as patch
    ):  # eager launches contend for the GIL: measured slower
        patch.setattr(demo.os, "cpu_count", lambda: 16)
        assert not demo.use_pipeline("auto", eager_gpu) and demo.use_pipeline("on", eager_gpu)
    for cores, expected in ((2, False), (4, True), (None, False)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(demo.os, "cpu_count", lambda cores=cores: cores)
            assert demo.use_pipeline("auto", cpu) is expected


def openmp_threads() -> int | None:
    """OpenMP's thread count for the calling thread (None where libgomp's symbol is not loaded)."""
    try:
        return int(ctypes.CDLL(None).omp_get_max_threads())
    except (AttributeError, OSError):
        return None


def test_network_thread_starts_with_the_configured_threads():
    """OpenMP keeps its thread count per thread: a new thread starts with every core until some
    aten op happens to apply torch's setting, so a network whose first op is a convolution ran
    on all cores whatever --threads said. The network thread sets it first."""
    if openmp_threads() is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs libgomp's omp_get_max_threads and 2+ cores to tell 1 from all")

    class Recorder:
        seen: list = []

        def infer(self, image):
            self.seen.append(openmp_threads())  # before any torch op in this thread
            return image

    frames = iter([Frame(t, np.zeros((2, 2, 3), np.uint8), t / 10) for t in range(3)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inferred, stop = app.infer_frames(frames, Recorder(), pipeline=True)
        assert len(list(inferred)) == 3
        stop()
    finally:
        torch.set_num_threads(threads)
    assert Recorder.seen == [1, 1, 1]


@pytest.mark.parametrize("shape", [(224, 320), (200, 320), (300, 320), (480, 640)])
def test_preprocess_canvas_is_the_evaluation_letterbox(shape):
    # the canvas is padded by strips now: every pixel must still be evaluation's, on frames that
    # fill it, leave a bottom strip or a right strip, and after a frame that left other strips
    class Uint8Runner:
        takes_uint8, description, device = True, "stub", torch.device("cpu")

    estimator = PoseEstimator(Uint8Runner(), INPUT)
    rng = np.random.default_rng(0)
    estimator.preprocess(rng.integers(0, 255, (100, 320, 3), dtype=np.uint8))  # leaves a strip
    frame = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    canvas, matrix = estimator.preprocess(frame)
    no_keypoints = np.zeros((0, 17, 3), np.float32)
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # evaluation letterboxes RGB images
    want, _, _, want_matrix = EvalResize(INPUT)(rgb, no_keypoints, np.zeros(shape, np.uint8))
    np.testing.assert_array_equal(canvas[0].numpy(), want)
    np.testing.assert_allclose(matrix, want_matrix)
