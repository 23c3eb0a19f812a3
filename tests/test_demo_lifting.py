"""The demo with XNect 3D checkpoints: Stage II lifting when the checkpoint has a lifting head,
the Stage I location-map read-out without one, for the PyTorch and the onnxruntime backends.

One random-weight Stage I + II model (selecsls42, xnect3d + lifting heads) and the same Stage I
weights without the lifting head go through the demo on a few synthetic frames. The network
outputs of every frame are recorded, so the 3D poses in the JSON can be checked against
`heads.pose3d.people.predict_people3d` on the same outputs, with and without the lifting network.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from selecsls.datasets.synthetic_people import render_image
from selecsls.heads import build_model, load_model, save_model
from selecsls.heads.pose3d.lifting import find_lifting
from selecsls.heads.pose3d.people import predict_people3d
from selecsls.tools import demo
from selecsls.tools._cli import run_cli
from selecsls.tools.realtime import app
from selecsls.tools.realtime.loading import load_onnx_estimator, load_torch_estimator
from selecsls.tools.realtime.outputs import person_record
from selecsls.tools.realtime.sources import open_source
from selecsls.tools.realtime.tracking import Tracker

SIZE = (192, 128)  # frame W x H
INPUT = (160, 96)  # network input
FRAMES = 3
JSON_KEYS = (("keypoints_3d", "pose3d_camera"), ("keypoints_3d_relative", "pose3d"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{"video", "stage12" (Stage I + II checkpoint), "stage1" (the same Stage I, no lifting),
    "model2d"} paths."""
    folder = tmp_path_factory.mktemp("lifting_demo")
    image, _, _ = render_image(0, 5, *SIZE, 3)
    video = folder / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    for t in range(FRAMES):
        writer.write(np.roll(image, 3 * t, axis=1))
    writer.release()
    torch.manual_seed(0)
    full = build_model({"backbone": "selecsls42", "heads": {"xnect3d": {}, "lifting": {}}})
    stage1 = build_model({"backbone": "selecsls42", "heads": {"xnect3d": {}}})
    missing, unexpected = stage1.load_state_dict(full.state_dict(), strict=False)
    assert not missing and all(k.startswith("heads.lifting.") for k in unexpected)
    out = {"video": video, "stage12": folder / "stage12.pt", "stage1": folder / "stage1.pt"}
    save_model(full, out["stage12"])
    save_model(stage1, out["stage1"])
    out["model2d"] = folder / "pose2d.pt"
    save_model(build_model({"backbone": "selecsls42", "heads": {"xnect2d": {}}}), out["model2d"])
    return out


class Recorder:
    """Wraps a runner and keeps every frame's outputs."""

    def __init__(self, runner) -> None:
        self.runner, self.outputs = runner, []
        self.description = runner.description

    def __call__(self, images):
        out = self.runner(images)
        self.outputs.append(out)
        return out


def run_recorded(estimator, video, path):
    """The demo over the clip (no smoothing: JSON keypoints = decoded keypoints) -> (JSON payload,
    recorded outputs per frame)."""
    estimator.runner = Recorder(estimator.runner)
    options = app.Options(json_path=str(path))
    summary = app.run(estimator, open_source(str(video)), Tracker(smoothing=False), options)
    assert summary["frames"] == FRAMES
    return json.loads(path.read_text()), estimator.runner.outputs


def expected_people(estimator, outputs, lifting):
    """predict_people3d on one frame's recorded outputs, as the demo should call it."""
    one = {k: v[0] for k, v in outputs.items()}
    matrix = estimator.resize.matrix(*SIZE)
    codec3d = estimator.pose3d.codec3d
    return predict_people3d(
        one, estimator.codec, codec3d, lifting=lifting, transform=matrix, image_size=SIZE
    )


def as_array(joints) -> np.ndarray:
    """JSON joints (null = not finite) -> (J, 3) float with NaN."""
    return np.array([[np.nan] * 3 if j is None else j for j in joints], np.float64)


def check_frames(payload, recorded, estimator, lifting) -> list[np.ndarray]:
    """Every JSON person's 3D equals predict_people3d's for the same person (0.1 mm rounding);
    returns the root-relative poses in JSON order, for comparison between runs."""
    relative = []
    assert len(payload["frames"]) == FRAMES
    for record, outputs in zip(payload["frames"], recorded):
        truth = expected_people(estimator, outputs, lifting)
        assert len(record["people"]) == len(truth["keypoints"])
        for person in record["people"]:
            keypoints = np.array(person["keypoints"])
            error = np.abs(truth["keypoints"] - keypoints[None]).reshape(len(truth["scores"]), -1)
            index = int(np.argmin(error.max(1)))
            assert error[index].max() < 0.01
            for key, name in JSON_KEYS:
                got = as_array(person[key])
                assert got.shape == (21, 3)
                np.testing.assert_allclose(got, truth[name][index], atol=0.051, equal_nan=True)
            relative.append(as_array(person["keypoints_3d_relative"]))
    return relative


def test_stage2_poses_in_json_and_differ_from_the_readout(files, tmp_path):
    stage2 = load_torch_estimator(str(files["stage12"]), INPUT, precision="fp32")
    assert stage2.pose3d_source == "stage2" and "Stage II" in stage2.pose3d_description
    payload, recorded = run_recorded(stage2, files["video"], tmp_path / "s2.json")
    assert payload["pose3d_source"] == "stage2"
    lifting = find_lifting(load_model(files["stage12"]))
    lifted = check_frames(payload, recorded, stage2, lifting)
    assert len(lifted) >= FRAMES, "the random model should find people"
    assert np.isfinite(np.stack(lifted)).all()  # Stage II gives every joint

    stage1 = load_torch_estimator(str(files["stage1"]), INPUT, precision="fp32")
    assert stage1.pose3d_source == "stage1"
    payload1, recorded1 = run_recorded(stage1, files["video"], tmp_path / "s1.json")
    assert payload1["pose3d_source"] == "stage1"
    for a, b in zip(recorded, recorded1):  # same Stage I weights: same network outputs
        np.testing.assert_allclose(a["locmaps"], b["locmaps"], atol=1e-5)
    readout = check_frames(payload1, recorded1, stage1, None)
    assert len(readout) == len(lifted)
    gap = np.nanmax(np.abs(np.stack(lifted) - np.stack(readout)))
    assert gap > 10.0, "Stage II poses should differ from the Stage I read-out"


def test_cli_startup_line_panel_and_json(files, tmp_path, capsys):
    base = ["--input", str(files["video"]), "--input-size", "160x96", "--headless"]
    base += ["--threads", "1", "--precision", "fp32"]
    threads = torch.get_num_threads()
    runs = {}
    try:  # --threads is process-wide
        for name in ("stage12", "stage1", "model2d"):
            video, people = tmp_path / f"{name}.avi", tmp_path / f"{name}.json"
            argv = ["--checkpoint", str(files[name]), *base, "--output", str(video)]
            assert demo.main(argv + ["--json", str(people)]) == 0
            out = capsys.readouterr().out
            runs[name] = (out, cv2.VideoCapture(str(video)), json.loads(people.read_text()))
    finally:
        torch.set_num_threads(threads)
    expect = {"stage12": ("3D: Stage II lifting", "stage2"), "stage1": ("3D: Stage I", "stage1")}
    expect["model2d"] = ("3D: none", None)
    for name, (line, source) in expect.items():
        out, capture, payload = runs[name]
        assert line in out.splitlines()[0], out
        assert payload["pose3d_source"] == source and payload["frame_count"] == FRAMES
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        assert width == (SIZE[0] + SIZE[1] if source else SIZE[0])  # the 3D panel
        people = [p for frame in payload["frames"] for p in frame["people"]]
        assert people
        for person in people:
            assert ("keypoints_3d" in person) == (source is not None)
            assert ("keypoints_3d_relative" in person) == (source is not None)


@pytest.fixture(scope="module")
def exported(files, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from selecsls.tools import export

    path = tmp_path_factory.mktemp("onnx") / "stage12.onnx"
    errors = export.export_checkpoint(str(files["stage12"]), str(path), INPUT)
    assert set(errors) == {"heatmaps", "pafs", "locmaps"}  # Stage I only: lifting has no output
    return path


def test_onnx_backend_runs_stage2_in_pytorch(files, exported, tmp_path, capsys):
    lifting = find_lifting(load_model(files["stage12"]))
    # the export carries Stage II in its metadata: no --lifting needed
    carried = load_onnx_estimator(str(exported), None)
    assert carried.pose3d_source == "stage2" and carried.input_size == INPUT
    payload, recorded = run_recorded(carried, files["video"], tmp_path / "carried.json")
    assert payload["pose3d_source"] == "stage2"
    assert check_frames(payload, recorded, carried, lifting)
    # --lifting CKPT takes precedence (here the same Stage II, so the same poses)
    lifted = load_onnx_estimator(str(exported), None, str(files["stage12"]))
    assert lifted.pose3d_source == "stage2"
    payload, recorded = run_recorded(lifted, files["video"], tmp_path / "onnx.json")
    assert check_frames(payload, recorded, lifted, lifting)

    bad = [
        (["--lifting", str(files["stage1"])], "no lifting head"),
        (["--lifting", str(tmp_path / "none.pt")], "not found"),
    ]
    for extra, message in bad:
        argv = ["--checkpoint", str(exported), "--backend", "onnxruntime", *extra]
        argv += ["--input", str(files["video"]), "--json", str(tmp_path / "x.json"), "--headless"]
        assert run_cli(demo.main, argv) == 2, extra
        assert message in capsys.readouterr().err, extra
    argv = ["--checkpoint", str(files["model2d"]), "--lifting", str(files["stage12"])]
    argv += ["--input", str(files["video"]), "--json", str(tmp_path / "x.json"), "--headless"]
    assert run_cli(demo.main, argv) == 2
    assert "no Stage I 3D branch" in capsys.readouterr().err


def test_json_records_nan_as_null():
    person = {"id": 3, "score": 1.0, "keypoints": np.zeros((17, 3)), "index": 0}
    camera = np.full((1, 21, 3), np.nan)
    relative = np.arange(63, dtype=np.float64).reshape(1, 21, 3)
    relative[0, 4] = np.nan
    record = person_record(person, camera, relative)
    assert record["keypoints_3d"] == [None] * 21
    assert record["keypoints_3d_relative"][4] is None
    assert record["keypoints_3d_relative"][5] == [15.0, 16.0, 17.0]
    json.dumps(record, allow_nan=False)  # valid JSON


def test_onnx_without_stored_stage2_falls_back_and_says_so(files, exported, tmp_path, capsys):
    import onnx

    from selecsls.tools.realtime.pose3d import LIFTING_KEY

    model = onnx.load(str(exported))
    kept = [p for p in model.metadata_props if p.key != LIFTING_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    older = tmp_path / "older.onnx"  # as exported before Stage II travelled in the file
    onnx.save(model, str(older))
    plain = load_onnx_estimator(str(older), None)
    assert plain.pose3d_source == "stage1"
    assert "--lifting" in capsys.readouterr().err
    entry = model.metadata_props.add()
    entry.key, entry.value = LIFTING_KEY, "not base64 weights"
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(ValueError, match="stored Stage II"):
        load_onnx_estimator(str(broken), None)
