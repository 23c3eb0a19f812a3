"""BVH output of the fitted skeletons, read back with an independent parser (PyPI `bvh`)."""

from __future__ import annotations

import json

import numpy as np
from bvh import Bvh

from selecsls.datasets.synthetic_motion import make_sequence, render_sequence
from selecsls.heads.motion.bones import mean_skeleton
from selecsls.heads.motion.bvh import CAMERA_TO_YUP
from selecsls.heads.motion.fitter import SkeletonFitter
from selecsls.heads.motion.kinematics import Pose, forward_kinematics, tpose_offsets
from selecsls.heads.skeletons import JOINTS21_NAMES
from selecsls.tools.realtime.fitting import InputFilters, MotionCapture

NAME = {n: i for i, n in enumerate(JOINTS21_NAMES)}


def axis_rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]  # fmt: skip


def bvh_positions(mocap: Bvh) -> dict[str, np.ndarray]:
    """Forward kinematics of a parsed BVH, written here from the format alone: every joint and
    End Site position (T, 3) over the frames, rotations composed in the channels' listed order
    (R = R_first R_second R_third), children at parent + R_parent @ OFFSET. An End Site is
    named after its joint + "/end"."""
    out: dict[str, np.ndarray] = {}
    frames = np.array(mocap.frames, np.float64)

    def visit(node, parent_pos, parent_rot):
        name = node.name
        offset = np.array([float(v) for v in node["OFFSET"]])
        channels = mocap.joint_channels(name)
        start = mocap.get_joint_channels_index(name)
        values = frames[:, start : start + len(channels)]
        pos = parent_pos + np.einsum("tij,j->ti", parent_rot, offset)
        rot = parent_rot.copy()
        for k, channel in enumerate(channels):
            if channel.endswith("rotation"):
                rot = rot @ np.stack([axis_rotation(channel[0], v) for v in values[:, k]])
        if "Xposition" in channels:  # the root: position channels (+ its OFFSET)
            xyz = [channels.index(c) for c in ("Xposition", "Yposition", "Zposition")]
            pos = values[:, xyz] + offset
        out[name] = pos
        for child in node.children:
            if child.value[0] == "JOINT":
                visit(child, pos, rot)
            elif child.value[0] == "End":
                end = np.array([float(v) for v in child["OFFSET"]])
                out[name + "/end"] = pos + np.einsum("tij,j->ti", rot, end)

    root = next(mocap.root.filter("ROOT"))
    count = len(frames)
    visit(root, np.zeros((count, 3)), np.broadcast_to(np.eye(3), (count, 3, 3)).copy())
    return out


# Each of the 21 joints in a BVH: its own joint, or the End Site of its parent (the leaves).
LEAF_OF = {"head_top": "head", "right_hand": "right_wrist", "left_hand": "left_wrist",
           "right_foot": "right_ankle", "left_foot": "left_ankle"}  # fmt: skip


def joints_from_bvh(positions: dict) -> np.ndarray:
    """(T, 21, 3) in the BVH's units and axes."""
    return np.stack(
        [positions[LEAF_OF[n] + "/end"] if n in LEAF_OF else positions[n] for n in JOINTS21_NAMES],
        1,
    )


def test_bvh_round_trip_gives_the_fitted_joints(tmp_path):
    sequence = make_sequence(seed=4, frames=30, people=2)
    rescale = 5
    capture = MotionCapture(SkeletonFitter(rescale_frames=rescale), InputFilters(), tmp_path, 30.0)
    fitted: dict[int, list] = {}
    rng = np.random.default_rng(0)
    for t in range(sequence["frames"]):
        live = [p for p in sequence["people"] if p["first"] <= t <= p["last"]]
        ids = [p["id"] for p in live]
        joints = np.array([p["joints"][t - p["first"]] for p in live]).reshape(-1, 21, 3)
        joints = joints + rng.normal(size=joints.shape) * 20.0  # noisy, so the fit is not exact
        result = capture.update(ids, joints, t=t / 30.0)["result"]
        for i, fit in zip(ids, result.joints):
            fitted.setdefault(i, []).append(fit)
    paths = capture.finish()
    assert sorted(p.name for p in paths) == [f"person_{i}.bvh" for i in sorted(fitted)]
    for i, frames in fitted.items():
        mocap = Bvh((tmp_path / f"person_{i}.bvh").read_text())
        assert mocap.nframes == len(frames)
        assert mocap.joint_offset("pelvis") == (0.0, 0.0, 0.0)
        from_file = joints_from_bvh(bvh_positions(mocap)) * 1000.0  # metres -> mm
        expected = np.array(frames) @ CAMERA_TO_YUP.T  # camera -> Y up
        error = np.linalg.norm(from_file - expected, axis=-1)[rescale:]  # bones frozen
        assert error.max() < 1.0, error.max()


def test_bvh_axes_t_pose_facing_the_camera_is_upright_and_not_mirrored(tmp_path):
    offsets = tpose_offsets(*mean_skeleton())
    pose = Pose.rest(1)
    pose.root[0] = [100.0, 200.0, 3000.0]
    pose.root_rotation[0] = np.diag([1.0, -1.0, -1.0])  # facing the camera, upright
    joints, _ = forward_kinematics(pose, offsets[None])
    # in camera space the head is up (-y) and the person's left hand is on the image's right
    assert joints[0, NAME["head"], 1] < joints[0, NAME["pelvis"], 1]
    assert joints[0, NAME["left_hand"], 0] > joints[0, NAME["right_hand"], 0]
    capture = MotionCapture(SkeletonFitter(rescale_frames=2), InputFilters(enabled=False),
                            tmp_path, 30.0)  # fmt: skip
    for t in range(3):
        capture.update([1], joints, t=t / 30.0)
    (path,) = capture.finish()
    mocap = Bvh(path.read_text())
    final = joints_from_bvh(bvh_positions(mocap))[-1]
    centred = final - final[NAME["pelvis"]]
    up = centred[NAME["head_top"]] / np.linalg.norm(centred[NAME["head_top"]])
    assert up[1] > 0.99  # head at +Y
    assert centred[NAME["left_hand"], 0] > 0.5 and centred[NAME["right_hand"], 0] < -0.5  # left +X
    forward = centred[NAME["left_foot"]] - centred[NAME["left_ankle"]]
    assert forward[2] > 0.9 * np.linalg.norm(forward)  # facing +Z (the feet point forward)
    # and the rotation angles of that rest pose are all zero (a BVH T-pose)
    assert np.abs(np.array(mocap.frames[-1][3:], float)).max() < 0.5


def test_angles_stay_continuous_through_a_full_turn():
    """A person turning on the spot through 400 degrees (and walking a little): Euler angles
    read independently per frame would jump by 360 at +-180; the BVH's and JSON's must not."""
    walk = make_sequence(seed=6, frames=60, people=1)["people"][0]["joints"]
    pelvis = walk[:, NAME["pelvis"] : NAME["pelvis"] + 1]
    turns = np.radians(np.linspace(0, 400, len(walk)))
    spin = np.stack([axis_rotation("Y", np.degrees(a)) for a in turns])  # camera y is vertical
    joints = np.einsum("tij,tkj->tki", spin, walk - pelvis) + pelvis
    capture = MotionCapture(SkeletonFitter(rescale_frames=3))
    angles = []
    for t in range(len(joints)):
        angles.append(capture.update([1], joints[t : t + 1], t=t / 30.0)["angles"][0])
    angles = np.array(angles)
    assert np.isfinite(angles).all()
    assert np.abs(np.diff(angles, axis=0)).max() < 45.0  # no +-180 degree flips
    assert np.ptp(angles, axis=0).max() > 300  # it did turn


def test_synthetic_motion_renders_frames_with_truth(tmp_path):
    sequence = make_sequence(seed=0, frames=4, size=(96, 64), people=2)
    again = make_sequence(seed=0, frames=4, size=(96, 64), people=2)
    assert np.array_equal(sequence["people"][0]["joints"], again["people"][0]["joints"])
    path = render_sequence(sequence, tmp_path)
    truth = json.loads(path.read_text())
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 4
    assert len(truth["frames"]) == 4 and truth["camera"]["f"][0] > 0
    person = truth["frames"][0]["people"][0]
    assert np.array(person["keypoints"]).shape == (17, 3)
    assert np.array(person["joints_3d"]).shape == (21, 3)
    assert np.array(person["points_2d"]).shape == (21, 2)
