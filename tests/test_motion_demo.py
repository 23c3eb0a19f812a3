"""The demo's frame loop with skeleton fitting on: JSON skeletons, BVH files, the flags.

The network is replaced by the synthetic sequence's truth (its 2D keypoints and 3D joints as
the estimator's prediction), so the test checks the wiring, not a network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selecsls.datasets.synthetic_motion import make_sequence, render_sequence
from selecsls.heads.motion.fitter import SkeletonFitter
from selecsls.heads.pose3d.geometry import default_intrinsics, project
from selecsls.tools import demo
from selecsls.tools._cli import run_cli
from selecsls.tools.realtime import app
from selecsls.tools.realtime.fitting import MotionCapture
from selecsls.tools.realtime.runtime import Prediction
from selecsls.tools.realtime.sources import open_source
from selecsls.tools.realtime.tracking import Tracker


class TruthEstimator:
    """Stands in for PoseEstimator: frame i's prediction is the sequence's truth at frame i."""

    input_size = (128, 96)
    pose3d_source = "stage2"

    def __init__(self, truth: dict) -> None:
        self.frames, self.count, self.frame_size = truth["frames"], 0, truth["size"]

    def infer(self, image):
        self.count += 1
        return self.count - 1

    def finish(self, index: int) -> Prediction:
        people = self.frames[index]["people"]
        keypoints = np.array([p["keypoints"] for p in people], np.float32).reshape(-1, 17, 3)
        joints = np.array([p["joints_3d"] for p in people]).reshape(-1, 21, 3)
        # the demo's camera is the default one of the frame size (as its 3D placement's)
        f, c = default_intrinsics(*self.frame_size)
        points = project(joints, f, c)
        points2d = np.concatenate([points, np.ones(points.shape[:2] + (1,))], -1)
        return Prediction(keypoints, np.ones(len(people)), joints, points2d=points2d,
                          pose3d_source="stage2")  # fmt: skip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("motion_clip")
    sequence = make_sequence(seed=1, frames=20, size=(128, 96), people=2)
    truth = json.loads(render_sequence(sequence, folder).read_text())
    return folder, truth


def test_demo_loop_writes_skeletons_and_bvh_files(clip, tmp_path):
    folder, truth = clip
    motion = MotionCapture(SkeletonFitter(rescale_frames=3), bvh_dir=tmp_path, fps=30.0)
    options = app.Options(json_path=str(tmp_path / "people.json"), pipeline=False, motion=motion)
    source = open_source(str(folder / "frames"), 30.0)
    summary = app.run(TruthEstimator(truth), source, Tracker(), options)
    assert summary["frames"] == 20 and "fit" in summary["ms"]
    payload = json.loads((tmp_path / "people.json").read_text())
    assert payload["skeleton"]["angle_order"].startswith("ZXY")
    ids, errors = set(), []
    for frame in payload["frames"]:
        for person in frame["people"]:
            skeleton = person["skeleton"]
            assert set(skeleton["joint_angles"]) == set(payload["skeleton"]["angle_joints"])
            fitted = np.array(skeleton["joints_3d"])
            errors.append(np.linalg.norm(fitted - np.array(person["keypoints_3d"]), axis=-1))
            ids.add(person["id"])
    assert np.mean(errors) < 40.0  # One-Euro smoothing + priors: close, not exact
    written = sorted(p.name for p in tmp_path.glob("*.bvh"))
    assert written == sorted(f"person_{i}.bvh" for i in ids)
    assert sorted(summary["bvh"]) == sorted(str(tmp_path / name) for name in written)


def test_demo_flags_check_the_bvh_folder_before_loading(clip, tmp_path, capsys):
    folder, _ = clip
    argv = ["--checkpoint", str(tmp_path / "none.pt"), "--input", str(folder / "frames"),
            "--json", str(tmp_path / "out.json"), "--headless",
            "--bvh", str(tmp_path / "nope")]  # fmt: skip
    assert run_cli(demo.main, argv) == 2
    assert "--bvh" in capsys.readouterr().err
    args = demo.parse_args(argv[:-2] + ["--fit", "--rescale-frames", "1"])
    with pytest.raises(ValueError, match="rescale frames must be 2..100"):
        demo.build_motion(args, 30.0)
