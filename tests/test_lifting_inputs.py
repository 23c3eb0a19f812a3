"""Stage II's ground-truth-derived training inputs use the same 2D points as inference (head =
nose, neck = mid-shoulders through `coco17_to_joints21_2d`), also after the random yaw."""

from __future__ import annotations

import json

import numpy as np
import torch

from selecsls.datasets.muco import camera_of, person_arrays
from selecsls.datasets.synthetic_body import pose_body, rot_y, sample_angles, sample_bones
from selecsls.datasets.synthetic_people import BODY_TO_CAMERA, FACE_FACING_MIN, render_image
from selecsls.datasets.synthetic_render import facing_camera
from selecsls.heads.pose3d.codec import root_relative
from selecsls.heads.pose3d.geometry import project
from selecsls.heads.pose3d.lifting import build_inputs, inputs_from_ground_truth
from selecsls.heads.pose3d.lifting_points import NOSE, nose_in_3d, stage2_points
from selecsls.heads.skeletons import (
    COCO17_FROM_JOINTS21,
    COCO17_NAMES,
    JOINTS21_NAMES,
    STAGE2_JOINTS,
    coco17_to_joints21_2d,
)
from selecsls.tools.engine.tasks.lifting_data import ground_truth_batch, random_yaw

NO_NOISE = {"noise2d": 0.0, "noise_near": 0.0, "noise_far": 0.0, "drop": 0.0}
# the COCO keypoints behind Stage II's 14 points: the nose (head) and the 12 body keypoints
STAGE2_COCO = [NOSE, *range(5, 17)]
HEAD, NECK = JOINTS21_NAMES.index("head"), JOINTS21_NAMES.index("neck")


def synthetic_people(images: int = 12) -> tuple[np.ndarray, ...]:
    """People of rendered synthetic images whose 13 Stage II COCO keypoints are all labelled
    (the nose is labelled only on faces turned towards the camera, hence a dozen images):
    (joints3d (P, 21, 3) mm, points2d (P, 21, 3), keypoints (P, 17, 3), f (P, 2), c (P, 2)),
    read from the annotations as the datasets read them."""
    out: list[list] = [[], [], [], [], []]
    for index in range(images):
        _, camera, annotations = render_image(index, 11, 320, 240, 3)
        f, c = camera_of(camera)
        for ann in annotations:
            keypoints = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
            if (keypoints[STAGE2_COCO, 2] > 0).all():
                joints, points = person_arrays(ann, f, c)
                for values, value in zip(out, (joints, points, keypoints, f, c)):
                    values.append(value)
    return tuple(np.array(values) for values in out)


def exact_readout(joints: np.ndarray) -> np.ndarray:
    """(P, 14, 63) the noise-free simulated read-out: every joint's root-relative position (m)."""
    rel = root_relative(joints).reshape(len(joints), 1, -1) / 1000.0
    return np.repeat(rel, len(STAGE2_JOINTS), axis=1)


def test_ground_truth_inputs_equal_inference_inputs():
    joints, points, keypoints, _, _ = synthetic_people()
    assert len(joints) >= 3
    rng = np.random.default_rng(0)
    trained = inputs_from_ground_truth(joints, points, rng, keypoints, **NO_NOISE)
    # inference: the decoded COCO keypoints (here the ground truth's) through the same mapping
    inferred = build_inputs(coco17_to_joints21_2d(keypoints), exact_readout(joints))
    np.testing.assert_allclose(trained[..., :2], inferred[..., :2], atol=1e-5)
    np.testing.assert_array_equal(trained[..., 2] > 0, inferred[..., 2] > 0)
    np.testing.assert_allclose(trained[..., 3:], inferred[..., 3:], atol=1e-6)
    # the old inputs (projected joints: head centre, skeleton neck) are a different point
    old = inputs_from_ground_truth(joints, points, rng, None, **NO_NOISE)
    np.testing.assert_allclose(old[..., 3:], trained[..., 3:], atol=1e-6)
    head_shift = np.abs(old[:, 0, :2] - trained[:, 0, :2]).max(-1)
    assert head_shift.max() > 0.05, head_shift


def test_unlabelled_keypoints_fall_back_to_projected_joints():
    joints, points, keypoints, _, _ = synthetic_people(6)
    keypoints = keypoints.copy()
    keypoints[0, NOSE] = 0  # no nose: the head centre stands in
    keypoints[1] = 0  # no COCO keypoints at all: the projected joints, as before
    mixed = stage2_points(points, keypoints)
    np.testing.assert_array_equal(mixed[0, HEAD], points[0, HEAD])
    np.testing.assert_array_equal(mixed[1], points[1])
    # labelled COCO-style (face points wherever seen), no nose means a face turned away: the
    # decoder gives no nose then, so no head point either
    coco_style = stage2_points(points, keypoints, face_labelled=np.array([True, False]))
    assert (coco_style[0, HEAD] == 0).all() and (coco_style[1] == mixed[1]).all()
    np.testing.assert_array_equal(np.delete(coco_style[0], HEAD, 0), np.delete(mixed[0], HEAD, 0))
    shoulders = keypoints[0, [COCO17_NAMES.index(f"{s}_shoulder") for s in ("left", "right")]]
    np.testing.assert_allclose(mixed[0, NECK, :2], shoulders[:, :2].mean(0))


def test_ground_truth_batch_uses_the_keypoints_it_is_given():
    joints, points, keypoints, f, c = synthetic_people(6)
    people = {
        "joints3d": torch.tensor(joints),
        "points2d": torch.tensor(points),
        "camera_f": torch.tensor(f),
        "camera_c": torch.tensor(c),
    }
    data = {"yaw": 0.0, **NO_NOISE}
    inferred = build_inputs(coco17_to_joints21_2d(keypoints), exact_readout(joints))
    batch = ground_truth_batch({**people, "keypoints": torch.tensor(keypoints)}, data)
    np.testing.assert_allclose(batch["inputs"][..., :2].numpy(), inferred[..., :2], atol=1e-5)
    without = ground_truth_batch(people, data)["inputs"]  # no keypoints: the projected joints
    assert not np.allclose(without[..., :2].numpy(), inferred[..., :2], atol=1e-3)


def bodies(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic bodies facing every way: (joints (P, 21, 3) camera mm, noses (P, 3) mm,
    COCO keypoints (P, 17, 3) projected with F, C, all labelled)."""
    rng = np.random.default_rng(seed)
    joints, faces = [], []
    for _ in range(count):
        body, face = pose_body(sample_bones(rng), sample_angles(rng))
        turn = rot_y(rng.uniform(-180, 180)).T @ BODY_TO_CAMERA.T
        place = np.array([rng.uniform(-1500, 1500), rng.uniform(-300, 300), rng.uniform(3e3, 8e3)])
        joints.append((body - body[14]) @ turn + place)
        faces.append((face - body[14]) @ turn + place)
    joints, faces = np.array(joints), np.array(faces)
    keypoints = np.full((count, 17, 3), 2.0)
    keypoints[:, :5, :2] = project(faces, F, C)
    for k, j in enumerate(COCO17_FROM_JOINTS21):
        if j >= 0:
            keypoints[:, k, :2] = project(joints[:, j], F, C)
    return joints, faces[:, 0], keypoints


F, C = 500.0, np.array([320.0, 240.0])


def test_nose_is_placed_in_3d_from_its_2d_position():
    joints, noses, keypoints = bodies(300, seed=1)
    error = np.linalg.norm(nose_in_3d(joints, keypoints, F, C) - noses, axis=-1)
    assert error.max() < 25.0, np.sort(error)[-5:]  # mm; the nose is 106 mm from the head
    keypoints[:5, NOSE, 2] = 0
    assert np.isnan(nose_in_3d(joints, keypoints, F, C)[:5]).all()


def test_random_yaw_turns_the_nose_with_the_head():
    joints, noses, keypoints = bodies(200, seed=2)
    points = np.zeros_like(joints)
    points[..., :2], points[..., 2] = project(joints, F, C), 1
    f, c = np.full((len(joints), 2), F), np.tile(C, (len(joints), 1))
    turned, turned_points, turned_coco = random_yaw(
        joints, points, f, c, 180.0, np.random.default_rng(3), keypoints
    )
    # each person's turn, from the hips: (x + iz) turns by e^(-i angle)
    hips = [JOINTS21_NAMES.index(f"{side}_hip") for side in ("left", "right")]
    before, after = (j[:, hips[0]] - j[:, hips[1]] for j in (joints, turned))
    angle = np.angle(before[:, 0] + 1j * before[:, 2]) - np.angle(after[:, 0] + 1j * after[:, 2])
    rel = noses - joints[:, 14]
    true = rel.copy()
    true[:, 0] = np.cos(angle) * rel[:, 0] + np.sin(angle) * rel[:, 2]
    true[:, 2] = -np.sin(angle) * rel[:, 0] + np.cos(angle) * rel[:, 2]
    true2d = project(true + joints[:, 14], F, C)
    # a nose the turn takes away from the camera is dropped, as the generator labels noses
    cosine = np.array([facing_camera(n, h) for n, h in zip(true + joints[:, 14], turned[:, HEAD])])
    seen = cosine > FACE_FACING_MIN[0]
    assert 40 < seen.sum() < 160
    clear = np.abs(cosine - FACE_FACING_MIN[0]) > 0.05  # the nose's 3D place is a few cm off
    np.testing.assert_array_equal((turned_coco[:, NOSE, 2] > 0)[clear], seen[clear])
    seen &= turned_coco[:, NOSE, 2] > 0
    error = np.linalg.norm(turned_coco[seen, NOSE, :2] - true2d[seen], axis=-1)
    head_centre = np.linalg.norm(turned_points[seen, HEAD, :2] - true2d[seen], axis=-1)
    assert np.percentile(error, 99) < 2.0 and np.median(head_centre) > 3.0, (error, head_centre)
    # the body keypoints sit on the turned joints, so the inputs are made as at inference
    shoulders = [COCO17_NAMES.index(f"{s}_shoulder") for s in ("left", "right")]
    np.testing.assert_allclose(
        stage2_points(turned_points, turned_coco)[:, NECK, :2],
        turned_coco[:, shoulders, :2].mean(1),
        atol=1e-3,  # the mapping works in float32
    )
    assert (turned_coco[:, 1:5, 2] == 0).all()  # eyes and ears are not carried


def test_multi3d_people_carries_the_coco_keypoints(tmp_path):
    """The Stage II training set hands each person's COCO keypoints on (as in its json), so the
    default ground-truth training builds inference-like 2D points."""
    from torch.utils.data import default_collate

    from selecsls.datasets.mix3d import Multi3DPeople
    from selecsls.datasets.synthetic_people import generate

    generate(tmp_path, 3, seed=4, size=(256, 192), max_people=3)
    data = json.loads((tmp_path / "annotations.json").read_text())
    people = Multi3DPeople(tmp_path / "annotations.json")
    kept = [a for a in data["annotations"] if a.get("num_keypoints", 1) > 0]
    assert len(people) == len(kept) >= 2
    for item, ann in zip(people, kept):
        expected = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        np.testing.assert_allclose(item["keypoints"].numpy(), expected)
        assert item["coco_labelled"] == 1.0
    batch = default_collate([people[i] for i in range(len(people))])
    settings = {"yaw": 0.0, **NO_NOISE}
    torch.manual_seed(0)
    with_keypoints = ground_truth_batch(batch, settings)["inputs"]
    without = {k: v for k, v in batch.items() if k != "keypoints"}
    torch.manual_seed(0)
    assert not torch.allclose(with_keypoints, ground_truth_batch(without, settings)["inputs"])
