"""The 3D location-map codec on synthetic people: round trip, neighbour fallback, masked loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selecsls.datasets.mix3d import synthetic_people_3d
from selecsls.datasets.synthetic_people import generate
from selecsls.heads.pose3d.codec import READOUT_SOURCES, Pose3DCodec, locmap_loss, root_relative
from selecsls.heads.skeletons import (
    JOINTS21_DETECTED,
    JOINTS21_NAMES,
    JOINTS21_NEIGHBOURS,
    JOINTS21_PARENTS,
)

SIZE = (256, 192)


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Per image: (joints3d (P, 21, 3) mm, true 2D joints (P, 21, 3) in input pixels)."""
    folder = tmp_path_factory.mktemp("synthetic3d")
    generate(folder, 8, seed=11, size=SIZE, max_people=4)
    dataset = synthetic_people_3d(folder, input_size=SIZE)
    out = []
    for index in range(len(dataset)):
        sample = dataset[index]
        if len(sample["joints3d"]):
            out.append((sample["joints3d"].numpy(), sample["points2d"].numpy()))
    assert sum(len(j) for j, _ in out) >= 10
    return out


def test_every_joint_has_a_readout_location():
    for joint, sources in enumerate(READOUT_SOURCES):
        assert sources, JOINTS21_NAMES[joint]
        assert all(k in JOINTS21_DETECTED for k in sources)
        if joint in JOINTS21_DETECTED:
            assert sources[0] == joint  # its own detection first
        else:
            assert set(sources) <= set(JOINTS21_NEIGHBOURS[joint])


def test_round_trip_at_true_joints(people):
    codec = Pose3DCodec()
    errors = []
    for joints3d, points2d in people:
        targets = codec.encode(joints3d, points2d, SIZE)
        assert targets["locmaps"].shape == (63, 24, 32)
        decoded, found = codec.decode(targets["locmaps"], points2d)
        truth = root_relative(joints3d)
        assert found.mean() > 0.8
        errors.append(np.linalg.norm(decoded - truth, axis=-1)[found])
    mpjpe = np.concatenate(errors).mean()
    assert mpjpe < 5.0, mpjpe


def test_hidden_joint_is_recovered_at_a_neighbour(people):
    codec = Pose3DCodec()
    elbow = JOINTS21_NAMES.index("left_elbow")
    checked = 0
    for joints3d, points2d in people:
        targets = codec.encode(joints3d, points2d, SIZE)
        hidden = points2d.copy()
        hidden[:, elbow, 2] = 0  # the 2D branch missed every left elbow
        decoded, found = codec.decode(targets["locmaps"], hidden)
        source = codec.readout_joints(hidden)
        truth = root_relative(joints3d)
        for p in range(len(joints3d)):
            if points2d[p, JOINTS21_PARENTS[elbow], 2] > 0 and points2d[p, elbow, 2] > 0:
                assert found[p, elbow] and source[p, elbow] == JOINTS21_PARENTS[elbow]
                error = np.linalg.norm(decoded[p, elbow] - truth[p, elbow])
                assert error < 5.0, error
                checked += 1
    assert checked >= 5


def test_people_without_3d_write_nothing_and_loss_masks_them(people):
    codec = Pose3DCodec()
    joints3d, points2d = max(people, key=lambda item: len(item[0]))
    assert len(joints3d) >= 2
    has_3d = np.zeros(len(joints3d), bool)
    none = codec.encode(joints3d, points2d, SIZE, has_3d)
    assert none["locmap_weights"].sum() == 0 and not none["locmaps"].any()
    has_3d[0] = True
    one = codec.encode(joints3d, points2d, SIZE, has_3d)
    every = codec.encode(joints3d, points2d, SIZE)
    assert 0 < one["locmap_weights"].sum() < every["locmap_weights"].sum()
    target = torch.from_numpy(one["locmaps"])[None]
    weights = torch.from_numpy(one["locmap_weights"])[None]
    pred = torch.zeros_like(target, requires_grad=True)
    loss = locmap_loss(pred, target, weights)
    loss.backward()
    assert loss > 0 and pred.grad.abs().sum() > 0
    assert locmap_loss(target, target, weights) == 0
    # a batch without 3D people gives an exact 0 that still backpropagates
    empty = locmap_loss(pred, target, torch.zeros_like(weights))
    assert empty == 0 and empty.requires_grad


def test_unlabelled_joints_and_undetected_people():
    codec = Pose3DCodec()
    joints3d = np.zeros((1, 21, 3))
    joints3d[0, :, 2] = 3000
    joints3d[0, 4] = [100, 200, 3100]
    joints3d[0, 7] = np.nan  # an unlabelled 3D joint: its channels get no weight
    points = np.zeros((1, 21, 3))
    points[0, :, :2] = [100, 80]
    points[0, list(JOINTS21_DETECTED), 2] = 1
    targets = codec.encode(joints3d, points, (256, 192))
    assert targets["locmap_weights"][7].sum() == 0 and targets["locmap_weights"][4].sum() > 0
    wrist = targets["locmaps"][12:15, 80 // 8, 100 // 8]
    np.testing.assert_allclose(wrist, [0.1, 0.2, 0.1], atol=1e-6)  # metres, root-relative
    decoded, found = codec.decode(targets["locmaps"], np.zeros((1, 21, 3)))
    assert not found.any() and np.isnan(decoded).all()
