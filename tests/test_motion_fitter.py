"""Stage III skeleton fitting: FK/IK round trip, joint limits, tracks, bad input, Euler angles."""

from __future__ import annotations

import numpy as np
import pytest

from selecsls.datasets.synthetic_motion import make_sequence
from selecsls.heads.motion.bones import BadSkeletonError, mean_skeleton, measure_bones
from selecsls.heads.motion.fitter import SkeletonFitter
from selecsls.heads.motion.kinematics import (
    DRIVEN,
    PARENTS,
    Pose,
    forward_kinematics,
    tpose_offsets,
)
from selecsls.heads.motion.limits import RANGES, limit_angles
from selecsls.heads.motion.rotations import (
    continuous_euler_zxy,
    euler_zxy,
    exp_map,
    from_euler_zxy,
)
from selecsls.heads.motion.solver import FitWeights
from selecsls.heads.skeletons import JOINTS21_NAMES

NAME = {n: i for i, n in enumerate(JOINTS21_NAMES)}
FACING_CAMERA = np.diag([1.0, -1.0, -1.0])  # body (y up, z forward) -> camera, facing it


def frames_of(sequence: dict):
    """(t, ids, joints (P, 21, 3)) for every frame of a synthetic sequence."""
    for t in range(sequence["frames"]):
        live = [p for p in sequence["people"] if p["first"] <= t <= p["last"]]
        joints = np.array([p["joints"][t - p["first"]] for p in live]).reshape(-1, 21, 3)
        yield t, [p["id"] for p in live], joints


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    child = np.flatnonzero(PARENTS >= 0)
    return np.linalg.norm(joints[..., child, :] - joints[..., PARENTS[child], :], axis=-1)


def test_fitting_exact_joints_reproduces_them_with_constant_bones():
    sequence = make_sequence(seed=2, frames=40, people=3)
    fitter = SkeletonFitter(rescale_frames=5, weights=FitWeights(w_smooth=0.1, iterations=3))
    errors, fitted = {}, {}
    for _, ids, joints in frames_of(sequence):
        result = fitter.update(ids, joints)
        for i, truth, fit in zip(ids, joints, result.joints):
            errors.setdefault(i, []).append(np.linalg.norm(fit - truth, axis=-1))
            fitted.setdefault(i, []).append(fit)
            # the truth moves within the joint limits, and so does its fit
            angles = limit_angles(result.pose.local[ids.index(i), DRIVEN][None])[0]
            assert (angles >= RANGES[..., 0] - 0.02).all() and (
                angles <= RANGES[..., 1] + 0.02
            ).all()
    kinds = {p["kind"] for p in sequence["people"]}
    assert len(kinds) >= 2, kinds  # the test covers more than one kind of motion
    for i, e in errors.items():
        assert np.mean(e) < 5.0, (i, np.mean(e))
        lengths = bone_lengths(np.array(fitted[i])[5:])  # frozen after the first 5 frames
        assert lengths.std(0).max() < 1e-6
        truth = bone_lengths(sequence["people"][i - 1]["joints"][0])
        assert np.abs(lengths[0] - truth).max() < 2.0


def impossible_pose() -> tuple[np.ndarray, np.ndarray, dict]:
    """Joints (21, 3) of a person facing the camera whose left knee bends forwards by 70 degrees
    and whose right elbow bends backwards by 60 degrees, the offsets, and those joints' ids."""
    offsets = tpose_offsets(*mean_skeleton())
    pose = Pose.rest(1)
    pose.root[0] = [0.0, 0.0, 4000.0]
    pose.root_rotation[0] = FACING_CAMERA
    # left shin (bone knee -> ankle) swung towards +z (the front): a knee cannot do that
    pose.local[0, NAME["left_ankle"]] = exp_map(np.array([-np.radians(70), 0.0, 0.0]))
    # right forearm (bone elbow -> wrist, rest -x) swung towards -z (the back)
    pose.local[0, NAME["right_wrist"]] = exp_map(np.array([0.0, -np.radians(60), 0.0]))
    joints, _ = forward_kinematics(pose, offsets[None])
    driven = list(DRIVEN)
    return joints[0], offsets, {"knee": driven.index(NAME["left_ankle"]),
                                "elbow": driven.index(NAME["right_wrist"])}  # fmt: skip


def test_joint_limits_hold_when_the_input_asks_for_an_impossible_pose():
    joints, _, index = impossible_pose()
    fitter = SkeletonFitter(rescale_frames=2)
    for _ in range(4):
        result = fitter.update([1], joints[None])
    angles = np.degrees(limit_angles(result.pose.local[:, DRIVEN])[0])
    low = np.degrees(RANGES[..., 0])
    # the input asks for flex -70 (knee) and -60 (elbow); the fit stays within 3 degrees of the
    # ranges' lower ends (-5 for both hinges)
    assert angles[index["knee"], 0] > low[index["knee"], 0] - 3.0, angles[index["knee"]]
    assert angles[index["elbow"], 0] > low[index["elbow"], 0] - 3.0, angles[index["elbow"]]
    # and it still follows the rest of the body
    fine = [NAME[n] for n in ("head", "left_wrist", "right_knee", "right_ankle")]
    assert np.linalg.norm(result.joints[0, fine] - joints[fine], axis=-1).max() < 30.0


def test_tracks_start_and_end_mid_video_and_frames_may_be_empty():
    sequence = make_sequence(seed=5, frames=30, people=4)
    assert any(p["first"] > 0 for p in sequence["people"])
    assert any(p["last"] < 29 for p in sequence["people"])
    fitter = SkeletonFitter(rescale_frames=3)
    ended, previous_ids = [], []
    for t, ids, joints in frames_of(sequence):
        if t == 12:  # nobody this frame: every track ends
            result = fitter.update([], np.zeros((0, 21, 3)))
            assert result.joints.shape == (0, 21, 3)
            assert sorted(result.ended) == sorted(previous_ids), result.ended
            ended += result.ended
            continue
        previous_ids = list(ids)
        result = fitter.update(ids, joints)
        ended += result.ended
        assert np.isfinite(result.joints).all()
        for i in ids:
            assert fitter.tracks[i].frames >= 1
    # a person leaving early ended their track at the first frame without them
    assert {p["id"] for p in sequence["people"] if p["last"] < 29} <= set(ended)
    # the empty frame ended person 1 (there all along): frame 13 started a new skeleton
    assert fitter.tracks[1].frames == 17


def test_a_kept_track_survives_a_missed_frame():
    joints = make_sequence(seed=1, frames=5, people=1)["people"][0]["joints"]
    fitter = SkeletonFitter(rescale_frames=2)
    fitter.update([7], joints[:1])
    result = fitter.update([], np.zeros((0, 21, 3)), keep=[7])
    assert result.ended == [] and 7 in fitter.tracks
    fitter.update([7], joints[1:2])
    assert fitter.tracks[7].frames == 2


def test_nan_joints_are_handled_by_the_priors():
    sequence = make_sequence(seed=3, frames=12, people=1)
    joints = sequence["people"][0]["joints"].copy()
    joints[4:6, NAME["left_wrist"]] = np.nan  # a joint missing for two frames
    joints[7] = np.nan  # a whole frame missing
    fitter = SkeletonFitter(rescale_frames=3)
    for t in range(len(joints)):
        result = fitter.update([1], joints[t : t + 1])
        assert np.isfinite(result.joints).all(), t
    # the first frame of a track with nothing finite gives NaN, not an exception
    empty = SkeletonFitter().update([9], np.full((1, 21, 3), np.nan))
    assert np.isnan(empty.joints).all()


def test_zero_length_bones_give_a_clear_error_or_the_prior():
    joints = make_sequence(seed=3, frames=3, people=1)["people"][0]["joints"].copy()
    joints[:, NAME["left_elbow"]] = joints[:, NAME["left_shoulder"]]
    with pytest.raises(BadSkeletonError, match="left_shoulder -> left_elbow"):
        measure_bones(joints)
    fitter = SkeletonFitter(rescale_frames=2)
    result = fitter.update([1], joints[:1])  # the fitter leaves such frames out of the bones
    assert np.isfinite(result.joints).all()
    assert fitter.tracks[1].bones.rejected == 1
    assert "left_elbow" in fitter.tracks[1].bones.error


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rescale frames must be 2..100"):
        SkeletonFitter(rescale_frames=1)
    with pytest.raises(ValueError, match="track ids repeat"):
        SkeletonFitter().update([1, 1], np.zeros((2, 21, 3)))
    with pytest.raises(ValueError, match="intrinsics"):
        SkeletonFitter().update([1], np.zeros((1, 21, 3)), points2d=np.zeros((1, 21, 3)))
    with pytest.raises(BadSkeletonError, match="frames, 21, 3"):
        measure_bones(np.zeros((4, 17, 3)))


def test_euler_angles_round_trip_and_stay_continuous():
    rng = np.random.default_rng(0)
    rotations = exp_map(rng.normal(size=(50, 3)))
    assert np.allclose(from_euler_zxy(euler_zxy(rotations)), rotations, atol=1e-9)
    # a spin of two full turns about y, tilted: the angles never jump
    spin = exp_map(np.linspace(0, 4 * np.pi, 200)[:, None] * [0.0, 1.0, 0.0])
    spin = spin @ exp_map(np.array([0.3, 0.0, 0.2]))
    previous, angles = None, []
    for r in spin:
        previous = continuous_euler_zxy(r, previous)
        angles.append(previous)
    angles = np.array(angles)
    assert np.abs(np.diff(angles, axis=0)).max() < np.radians(10)
    assert np.allclose(from_euler_zxy(angles), spin, atol=1e-9)


def test_foot_contact_keeps_a_standing_foot_from_sliding_on_noisy_input():
    # a person standing still, seen with Stage II-like noise (50 mm per coordinate per frame)
    still = make_sequence(seed=2, frames=40, people=1)["people"][0]["joints"][0]
    rng = np.random.default_rng(0)
    inputs = still + rng.normal(scale=50.0, size=(80, 21, 3))
    feet = [NAME["left_foot"], NAME["right_foot"]]
    slide = {}
    for name, weights in (("pinned", FitWeights()), ("free", FitWeights(w_contact=0.0))):
        fitter = SkeletonFitter(rescale_frames=5, weights=weights)
        fitted = np.array([fitter.update([1], frame[None]).joints[0] for frame in inputs])
        steps = np.linalg.norm(np.diff(fitted[20:, feet], axis=0), axis=-1)  # after settling
        slide[name] = float(steps.mean())
    assert slide["pinned"] < 0.6 * slide["free"], slide


def test_the_contact_pin_lets_go_of_a_foot_that_really_moves():
    # exact input: the jitter is tiny, so the pin releases at once and the fit follows the truth
    fitter = SkeletonFitter(rescale_frames=5)
    track_errors = []
    for _, ids, joints in frames_of(make_sequence(seed=5, frames=40, people=1)):
        result = fitter.update(ids, joints)
        feet = [NAME["left_foot"], NAME["right_foot"]]
        track_errors.append(np.linalg.norm(result.joints[:, feet] - joints[:, feet], axis=-1))
    assert np.mean(np.concatenate(track_errors[10:])) < 5.0
