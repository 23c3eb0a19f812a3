"""The CUDA graph runner's device-side decode gives the numpy decoder's people, and the graph path
falls back cleanly without CUDA (the capture itself is checked where CUDA is present)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from selecsls.datasets.coco import to_tensor
from selecsls.heads.pose2d.centre.codec import CentreCodec
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.slots import SLOT_KEYS, has_slots, slot_outputs
from selecsls.tools.deploy.cuda_graph import CapturedCall, GraphUnavailable, graph_support
from selecsls.tools.realtime.graph import GraphRunner, PoseStep, use_graph
from selecsls.tools.realtime.runtime import PoseEstimator, TorchRunner
from tests.test_peaks_torch import coco_maps

INPUT = (640, 640)  # coco_maps' input size (W, H)


@pytest.fixture(scope="module")
def maps() -> dict[str, np.ndarray]:
    return coco_maps()


def per_image(outputs: dict, n: int) -> dict[str, np.ndarray]:
    return {k: v[n].numpy() if isinstance(v, torch.Tensor) else v[n] for k, v in outputs.items()}


def assert_same_people(got, want) -> None:
    (keypoints, scores), (want_keypoints, want_scores) = got, want
    assert keypoints.shape == want_keypoints.shape
    np.testing.assert_array_equal(keypoints[..., 2] > 0, want_keypoints[..., 2] > 0)
    np.testing.assert_allclose(keypoints, want_keypoints, rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)


def test_slot_decode_equals_numpy_decode_on_coco(maps):
    codec = Pose2DCodec()
    slots = slot_outputs(torch.from_numpy(maps["heatmaps"]), torch.from_numpy(maps["pafs"]), codec)
    assert set(slots) == set(SLOT_KEYS)
    people = 0
    for n in range(len(maps["heatmaps"])):
        want = codec.decode(maps["heatmaps"][n], maps["pafs"][n])
        got = codec.decode_outputs(per_image(slots, n))  # slots only: no maps at all
        assert_same_people(got, want)
        people += len(want[1])
    assert people >= 10


def test_slot_decode_on_crowded_noise_with_a_peak_cap():
    # more peaks than max_peaks: the cap, tie order and candidate numbering all matter here
    rng = np.random.default_rng(3)
    codec = Pose2DCodec(max_peaks=5)
    heatmaps = rng.random((2, 19, 24, 30)).astype(np.float32)
    pafs = (rng.random((2, 38, 24, 30)) * 2 - 1).astype(np.float32)
    pafs[:, ::2] = np.abs(pafs[:, ::2])  # fields pointing along +x: many accepted limbs
    codec_loose = Pose2DCodec(max_peaks=5, paf_min_ratio=0.3)
    for chosen in (codec, codec_loose):
        slots = slot_outputs(torch.from_numpy(heatmaps), torch.from_numpy(pafs), chosen)
        for n in range(2):
            assert_same_people(
                chosen.decode_outputs(per_image(slots, n)), chosen.decode(heatmaps[n], pafs[n])
            )
    assert len(codec_loose.decode(heatmaps[0], pafs[0])[1]) > 0


def test_no_peaks_gives_no_people():
    codec = Pose2DCodec()
    zeros = torch.zeros(1, 19, 8, 8), torch.zeros(1, 38, 8, 8)
    keypoints, scores = codec.decode_outputs(per_image(slot_outputs(*zeros, codec), 0))
    assert keypoints.shape == (0, 17, 3) and scores.shape == (0,)


class FixedMaps(nn.Module):
    """A 'network' whose outputs are given maps (batch 1), so decoded people are real ones."""

    def __init__(self, heatmaps: np.ndarray, pafs: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("heatmaps", torch.from_numpy(heatmaps[None]))
        self.register_buffer("pafs", torch.from_numpy(pafs[None]))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        keep = self.scale + 0 * images.float().mean()  # depends on the input, equals 1
        return {"heatmaps": self.heatmaps * keep, "pafs": self.pafs * keep}


def crowded(maps) -> FixedMaps:
    """FixedMaps of the sample image with the most people."""
    counts = [len(Pose2DCodec().decode(h, p)[1]) for h, p in zip(maps["heatmaps"], maps["pafs"])]
    n = int(np.argmax(counts))
    return FixedMaps(maps["heatmaps"][n], maps["pafs"][n])


def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (INPUT[1], INPUT[0], 3), dtype=np.uint8)


def test_graph_runner_without_cuda_falls_back_and_decodes_the_same_people(maps, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = crowded(maps)
    runner = GraphRunner(model, Pose2DCodec(), device="cpu", precision="fp32", graph=True)
    assert runner.captured is None and "CUDA" in runner.note
    assert "device-decode" in runner.description and "cuda-graph" not in runner.description
    estimator = PoseEstimator(runner, INPUT, Pose2DCodec())
    inference = estimator.infer(frame())
    assert has_slots(inference.outputs) and "heatmaps" not in inference.outputs
    reference = PoseEstimator(TorchRunner(model, "cpu", "fp32"), INPUT, Pose2DCodec())
    got, want = estimator(frame()), reference(frame())
    assert len(want.scores) >= 2
    assert_same_people((got.keypoints, got.scores), (want.keypoints, want.scores))


def test_graph_runner_keeps_all_outputs_for_a_codec_without_slots(maps):
    model = FixedMaps(maps["heatmaps"][0], maps["pafs"][0])
    runner = GraphRunner(model, CentreCodec(), device="cpu", precision="fp32", graph=False)
    assert runner.note is None and "device-decode" not in runner.description
    outputs = runner(torch.zeros(1, 16, 16, 3, dtype=torch.uint8))
    assert set(outputs) == {"heatmaps", "pafs"}


class Recorder(nn.Module):
    """Keeps the network input it is given."""

    def forward(self, images: torch.Tensor) -> dict:
        self.seen = images
        return {}


def test_device_normalisation_equals_to_tensor():
    image = frame()[:48, :64]
    recorder = Recorder()
    PoseStep(recorder, None, torch.float32)(torch.from_numpy(image)[None])
    expected = to_tensor(image).unsqueeze(0).float()
    assert recorder.seen.shape == expected.shape
    assert recorder.seen.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(recorder.seen.numpy(), expected.numpy(), rtol=0, atol=1e-5)


def test_captured_call_refuses_cpu_tensors():
    assert graph_support("cpu") is not None and "CUDA" in graph_support("cpu")
    with pytest.raises(GraphUnavailable, match="CUDA"):
        CapturedCall(lambda x: x * 2)(torch.ones(2))


def test_use_graph_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not use_graph("auto", "auto", "auto", False)
    assert use_graph("auto", "cuda", "auto", False)
    assert not use_graph("auto", "cuda", "auto", True)  # --compile keeps its own runner
    assert use_graph("on", "cpu", "fp32", False)
    assert not use_graph("off", "cuda", "auto", False)
    with pytest.raises(ValueError, match="--graph"):
        use_graph("maybe", "cuda", "auto", False)
    with pytest.raises(ValueError, match="int8"):
        use_graph("on", "cpu", "int8", False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_runner_equals_eager():
    # noise maps (no shared data on a GPU machine): replay equals eager whatever the content
    rng = np.random.default_rng(4)
    heatmaps = rng.random((19, 40, 64)).astype(np.float32)
    pafs = np.abs(rng.random((38, 40, 64)).astype(np.float32))
    model = FixedMaps(heatmaps, pafs)
    codec = Pose2DCodec(paf_min_ratio=0.3)
    graphed = GraphRunner(model, codec, device="cuda", precision="fp32")
    eager = GraphRunner(model, codec, device="cuda", precision="fp32", graph=False)
    assert graphed.captured is not None and "cuda-graph" in graphed.description
    images = torch.from_numpy(frame()[:320, :512])[None]
    for _ in range(3):  # capture, then replays
        got, want = graphed(images), eager(images)
        assert set(got) == set(want) and has_slots(got)
        for name in got:
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5)
    people = codec.decode_outputs({k: v[0] for k, v in got.items()})
    assert_same_people(people, codec.decode(heatmaps, pafs))


def test_demo_graph_on_without_cuda_runs_eagerly_with_a_note(tmp_path, capsys, monkeypatch):
    import cv2

    from selecsls.heads import build_model, save_model
    from selecsls.tools import demo

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.roll(frame()[:96, :160], 7 * i, axis=1))
    torch.manual_seed(0)
    checkpoint = tmp_path / "random.pt"
    save_model(build_model({"backbone": "selecsls42", "heads": {"xnect2d": {}}}), checkpoint)
    people = {}
    threads = torch.get_num_threads()
    try:
        for choice in ("on", "off"):
            out = tmp_path / f"{choice}.json"
            argv = ["--checkpoint", str(checkpoint), "--input", str(folder), "--headless"]
            argv += ["--input-size", "160x96", "--json", str(out), "--threads", "1"]
            argv += ["--device", "cpu", "--precision", "fp32", "--graph", choice]
            assert demo.main(argv) == 0
            frames = json.loads(out.read_text())["frames"]
            people[choice] = [[p["keypoints"] for p in f["people"]] for f in frames]
    finally:
        torch.set_num_threads(threads)
    assert "--graph on: CUDA graphs need a CUDA device" in capsys.readouterr().err
    assert len(people["on"]) == 2
    for got, want in zip(people["on"], people["off"]):
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-3)
    onnx = ["--checkpoint", "m.onnx", "--input", str(folder), "--headless", "--json", "j.json"]
    with pytest.raises(ValueError, match="--graph on is for the pytorch backend"):
        demo.main([*onnx, "--backend", "onnxruntime", "--graph", "on"])


class OpRecorder:
    """The aten ops a call runs (a TorchDispatchMode), to check capture safety on the CPU."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        names = self.names = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                names.append(func.__name__)
                return func(*args, **(kwargs or {}))

        self.mode = Mode()


# ops a CUDA graph capture cannot hold: host syncs (item, nonzero, data-dependent shapes) and
# tensors made from host data (a host-to-device copy)
NOT_CAPTURABLE = ("_local_scalar_dense", "nonzero", "lift_fresh", "masked_select", "unique")


def test_the_graph_step_is_capture_safe():
    from selecsls.heads import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": "selecsls42", "heads": {"xnect2d": {}}})
    runner = GraphRunner(model, Pose2DCodec(), device="cpu", precision="fp32", graph=False)
    images = torch.from_numpy(frame()[:64, :96])[None]
    with torch.inference_mode():
        runner.step(images)  # the warm-up: cached constants are made here, as before a capture
        recorder = OpRecorder()
        with recorder.mode:
            outputs = runner.step(images)
    assert has_slots(outputs) and len(recorder.names) > 100
    bad = sorted({n for n in recorder.names if n.split(".")[0] in NOT_CAPTURABLE})
    assert not bad, bad


def test_the_demo_lets_cudnn_pick_algorithms_on_cuda_only(monkeypatch):
    from selecsls.tools.realtime.loading import prepare_device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepare_device("cpu")
    assert torch.backends.cudnn.benchmark is False
    prepare_device("cuda:0")
    assert torch.backends.cudnn.benchmark is True
