"""Stage II lifting (inputs, a short training run that must lower MPJPE), absolute placement and
the Stage I -> 3D people pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selecsls.datasets.synthetic_body import pose_body, rot_y, sample_angles, sample_bones
from selecsls.datasets.synthetic_people import BODY_TO_CAMERA
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose3d.codec import Pose3DCodec, root_relative
from selecsls.heads.pose3d.geometry import (
    default_intrinsics,
    fit_translation,
    place_people,
    procrustes_align,
    project,
)
from selecsls.heads.pose3d.lifting import (
    LiftingNet,
    build_inputs,
    inputs_from_ground_truth,
    inputs_from_stage1,
    lift_people,
    lifting_loss,
    lifting_targets,
    to_millimetres,
)
from selecsls.heads.pose3d.people import predict_people3d, stage2_training_pairs
from selecsls.heads.skeletons import JOINTS21_DETECTED, JOINTS21_FROM_COCO17, STAGE2_JOINTS

F, C = 500.0, np.array([320.0, 240.0])


def make_people(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 21, 3) camera mm and (count, 21, 3) projected 2D (v = 1 on detected joints)."""
    rng = np.random.default_rng(seed)
    joints = []
    for _ in range(count):
        body, _ = pose_body(sample_bones(rng), sample_angles(rng))
        body = body @ rot_y(rng.uniform(-180, 180)).T @ BODY_TO_CAMERA.T
        place = [rng.uniform(-1500, 1500), rng.uniform(-300, 300), rng.uniform(3000, 8000)]
        joints.append(body - body[14] + place)
    joints = np.array(joints)
    points = np.zeros_like(joints)
    points[..., :2] = project(joints, F, C)
    points[:, list(JOINTS21_DETECTED), 2] = 1
    return joints, points


def test_inputs_are_neck_relative_and_scale_free():
    joints, points = make_people(3, seed=0)
    readout = np.random.default_rng(0).normal(size=(3, 14, 63))
    inputs = build_inputs(points, readout)
    assert inputs.shape == (3, 14, 66) and inputs.dtype == np.float32
    assert np.allclose(inputs[:, 1, :2], 0)  # the neck is the origin
    assert np.allclose(np.sqrt((inputs[..., :2] ** 2).sum(-1).mean(-1)), 1, atol=1e-5)
    scaled = points.copy()
    scaled[..., :2] = scaled[..., :2] * 3 + 17  # a bigger, shifted image of the same people
    np.testing.assert_allclose(build_inputs(scaled, readout), inputs, atol=1e-5)
    points[0, STAGE2_JOINTS[4], 2] = 0  # an undetected joint: its row is all zero
    assert not build_inputs(points, readout)[0, 4].any()


@pytest.fixture()
def one_thread():
    """Small matrices: one thread is far faster than two fighting over busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_stage2_learns_on_ground_truth_inputs(one_thread):
    torch.manual_seed(0)
    train_joints, train_points = make_people(1500, seed=1)
    test_joints, test_points = make_people(300, seed=2)
    test_inputs = inputs_from_ground_truth(test_joints, test_points, np.random.default_rng(3))
    truth = root_relative(test_joints)
    net = LiftingNet()

    def held_out_mpjpe() -> float:
        poses = lift_people(net, test_inputs)
        return float(np.linalg.norm(poses - truth, axis=-1).mean())

    before = held_out_mpjpe()
    optimiser = torch.optim.Adam(net.parameters(), 2e-3)
    rng = np.random.default_rng(4)
    net.train()
    for _ in range(250):
        pick = rng.choice(len(train_joints), 128, replace=False)
        inputs = inputs_from_ground_truth(train_joints[pick], train_points[pick], rng)
        targets = {k: torch.from_numpy(v) for k, v in lifting_targets(train_joints[pick]).items()}
        loss = lifting_loss(net(torch.from_numpy(inputs)), targets)["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = held_out_mpjpe()
    print(f"held-out MPJPE {before:.1f} -> {after:.1f} mm")
    assert after < 0.5 * before and after < 150.0, (before, after)


def test_targets_and_outputs_round_trip_to_millimetres():
    joints, _ = make_people(4, seed=5)
    targets = lifting_targets(joints)
    outputs = {k: torch.from_numpy(v) for k, v in targets.items()}
    np.testing.assert_allclose(to_millimetres(outputs), root_relative(joints), atol=0.05)
    assert 0.45 < targets["scale"].mean() < 0.8  # metres, as TYPICAL_SCALE assumes
    assert lifting_loss(outputs, outputs)["total"] == 0


def test_root_depth_fit_recovers_a_known_placement():
    joints, points = make_people(5, seed=6)
    rel = root_relative(joints)
    for person, pose in enumerate(rel):
        translation = fit_translation(pose, points[person, :, :2], F, C)
        np.testing.assert_allclose(translation, joints[person, 14], rtol=1e-7, atol=1e-5)
    # default intrinsics from the image width, 2D noise of a pixel: depth within 3%
    f, c = default_intrinsics(640, 480)
    points[..., :2] = project(joints, f, c)
    points[..., :2] += np.random.default_rng(7).normal(size=points[..., :2].shape)
    placed = place_people(rel, points, image_size=(640, 480))
    np.testing.assert_allclose(placed[:, 14, 2], joints[:, 14, 2], rtol=0.03)
    points[0, :, 2] = 0  # no usable joints: NaN, not a crash
    assert np.isnan(place_people(rel, points, f, c)[0]).all()
    with pytest.raises(ValueError, match="intrinsics"):
        place_people(rel, points)


def test_procrustes_undoes_a_similarity_but_not_a_reflection():
    rng = np.random.default_rng(8)
    target = rng.normal(size=(21, 3)) * 300
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    pred = 1.7 * target @ rotation + [10, -40, 3000]
    np.testing.assert_allclose(procrustes_align(pred, target), target, atol=1e-8)
    mirrored = target * [-1, 1, 1]
    assert np.abs(procrustes_align(mirrored, target) - target).max() > 10


def test_pipeline_from_stage1_maps_to_placed_people():
    """Ground-truth maps of one person through 2D decoding, read-out, Stage II and placement."""
    codec2d, codec3d = Pose2DCodec(), Pose3DCodec()
    f, c = np.array([300.0, 300.0]), np.array([127.5, 95.5])
    joints, _ = make_people(1, seed=9)
    joints[0] += [0, 0, -2000] - joints[0, 14] * [1, 1, 0]  # centre it, ~1-6 m away
    points = np.zeros_like(joints)
    points[..., :2] = project(joints, f, c)
    points[:, list(JOINTS21_DETECTED), 2] = 1
    coco = np.zeros((1, 17, 3), np.float32)
    for joint, k in enumerate(JOINTS21_FROM_COCO17):
        if k >= 0:
            coco[0, k] = (*points[0, joint, :2], 2)
    coco[0, 0] = (*points[0, 16, :2], 2)  # nose at the head
    maps2d = codec2d.encode(coco, (256, 192))
    maps3d = codec3d.encode(joints, points, (256, 192))
    outputs = {"heatmaps": maps2d["heatmaps"], "pafs": maps2d["pafs"], **maps3d}
    people = predict_people3d(outputs, codec2d, codec3d, f=f, c=c)
    assert len(people["pose3d"]) == 1
    found = np.isfinite(people["pose3d"][0]).all(-1)
    error = np.linalg.norm(people["pose3d"][0] - root_relative(joints)[0], axis=-1)[found]
    assert found.sum() >= 15 and error.mean() < 5.0
    depth = people["pose3d_camera"][0, 14, 2]
    assert abs(depth - joints[0, 14, 2]) < 0.05 * joints[0, 14, 2]
    lifted = predict_people3d(outputs, codec2d, codec3d, LiftingNet(), f=f, c=c)
    assert lifted["pose3d"].shape == (1, 21, 3) and np.isfinite(lifted["pose3d"]).all()
    assert inputs_from_stage1(maps3d["locmaps"], points, codec3d).shape == (1, 14, 66)
    # Stage II training pairs: the detected person matched to its ground truth
    inputs, matched = stage2_training_pairs(
        maps3d["locmaps"], people["points2d"], joints, points, codec3d
    )
    assert inputs.shape == (1, 14, 66) and np.allclose(matched, joints)
    far = people["points2d"].copy()
    far[..., :2] += 1000
    assert len(stage2_training_pairs(maps3d["locmaps"], far, joints, points, codec3d)[0]) == 0


def test_a_stage2_below_its_readout_is_pointed_out():
    from selecsls.tools.engine.tasks.lifting import below_readout_note

    note = below_readout_note({"pck_all": 39.8, "readout_pck_all": 50.8}, "runs/s1/best.pt")
    assert note and "(39.8)" in note and "(50.8)" in note and "runs/s1/best.pt" in note
    assert below_readout_note({"pck_all": 51.0, "readout_pck_all": 50.8}, "s1.pt") is None
    assert below_readout_note({"lift_pck": 90.0}, "s1.pt") is None  # no Stage I evaluated
