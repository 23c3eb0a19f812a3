"""The multi-person 3D format loader on the hand-made fixture, the synthetic set as 3D data, and
mixing 2D-only with 3D data in one batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selecsls.datasets.coco import CocoKeypoints, DatasetError
from selecsls.datasets.mix3d import (
    With3DFields,
    collate_pose3d,
    mixed_dataset,
    synthetic_people_3d,
)
from selecsls.datasets.muco import Multi3DDataset
from selecsls.datasets.synthetic_people import generate
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.pose3d.geometry import project
from selecsls.heads.skeletons import COCO17_FROM_JOINTS21, COCO17_NAMES

FIXTURE = Path(__file__).resolve().parent / "data" / "muco_tiny"
COCO_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"


@pytest.fixture(scope="module")
def written():
    return json.loads((FIXTURE / "annotations.json").read_text())


def test_fixture_loads_as_written(written):
    dataset = Multi3DDataset(FIXTURE / "annotations.json", FIXTURE / "images", (64, 48))
    assert len(dataset) == 2
    assert dataset.image_path(dataset.images[0]) == FIXTURE / "images/seq01/img_000001.jpg"
    first, second = dataset[0], dataset[1]
    # image 1: two 21-joint people, joints and 2D exactly as written (identity resize)
    anns = [a for a in written["annotations"] if a["image_id"] == 1]
    assert first["joints3d"].shape == (2, 21, 3) and first["image"].shape == (3, 48, 64)
    for p, ann in enumerate(anns):
        np.testing.assert_allclose(first["joints3d"][p], ann["keypoints_cam"], atol=1e-3)
        np.testing.assert_allclose(first["points2d"][p, :, :2], ann["keypoints_img"], atol=1e-3)
    np.testing.assert_allclose(first["camera_f"], written["images"][0]["f"])
    np.testing.assert_allclose(first["camera_c"], written["images"][0]["c"])
    assert first["has_3d"].all()
    # image 2: MuPoTS-style 17 joints; the rest NaN, a joint marked outside is unlabelled
    ann = written["annotations"][2]
    np.testing.assert_allclose(second["joints3d"][0, :17], ann["keypoints_cam"], atol=1e-3)
    assert torch.isnan(second["joints3d"][0, 17:]).all()
    assert second["points2d"][0, 10, 2] == 0 and second["points2d"][0, 9, 2] == 1
    assert (second["points2d"][0, 17:, 2] == 0).all()
    np.testing.assert_allclose(second["camera_f"], [50.0, 52.0])


def test_resize_keeps_camera_and_projection_consistent():
    codec3d = Pose3DCodec()
    dataset = Multi3DDataset(
        FIXTURE / "annotations.json",
        FIXTURE / "images",
        (128, 96),
        encoder=Pose2DCodec().encode,
        encoder3d=codec3d.encode,
        coco_from_joints=COCO17_FROM_JOINTS21,
    )
    for sample in (dataset[0], dataset[1]):
        joints, points = sample["joints3d"].numpy(), sample["points2d"].numpy()
        f, c = sample["camera_f"].numpy(), sample["camera_c"].numpy()
        for p in range(len(joints)):
            ok = points[p, :, 2] > 0
            np.testing.assert_allclose(project(joints[p, ok], f, c), points[p, ok, :2], atol=0.05)
        assert sample["locmaps"].shape == (63, 12, 16)
        assert sample["locmap_weights"].shape == (21, 12, 16)
        assert sample["locmap_weights"].max() > 0.5
    first = dataset[0]
    np.testing.assert_allclose(first["camera_f"], [80.0, 80.0])  # the image doubled in size
    np.testing.assert_allclose(first["camera_c"], [64.5, 48.5])  # 2 c + 0.5 (pixel centres)
    # COCO keypoints made from the joints: wrists/hips labelled, the face not
    wrist = COCO17_NAMES.index("left_wrist")
    assert (first["keypoints"][:, wrist, 2] > 0).all() and (first["keypoints"][:, :5, 2] == 0).all()


def test_bad_files_name_the_problem(tmp_path, written):
    bad = dict(written, images=[dict(written["images"][0])])
    del bad["images"][0]["f"]
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="no camera"):
        Multi3DDataset(tmp_path / "a.json", FIXTURE / "images")
    with pytest.raises(DatasetError, match="missing"):
        Multi3DDataset(FIXTURE / "annotations.json", tmp_path)


def test_synthetic_set_as_3d_data(tmp_path):
    generate(tmp_path, 3, seed=4, size=(128, 96), max_people=3)
    written = json.loads((tmp_path / "annotations.json").read_text())
    dataset = synthetic_people_3d(tmp_path, input_size=(128, 96))
    sample = dataset[0]
    anns = [a for a in written["annotations"] if a["image_id"] == 1 and a["num_keypoints"] > 0]
    assert sample["joints3d"].shape == (len(anns), 21, 3)
    for p, ann in enumerate(anns):
        np.testing.assert_allclose(sample["joints3d"][p], ann["keypoints_3d"], atol=1e-3)
        # projected joints agree with the COCO annotation where both exist (e.g. the wrists)
        kp = np.array(ann["keypoints"]).reshape(17, 3)
        wrist = COCO17_NAMES.index("right_wrist")
        if kp[wrist, 2] > 0:
            joint = COCO17_FROM_JOINTS21[wrist]
            np.testing.assert_allclose(sample["points2d"][p, joint, :2], kp[wrist, :2], atol=0.1)
    assert sample["camera_f"][0] == pytest.approx(written["images"][0]["camera"]["f"][0], 1e-5)


@pytest.mark.skipif(not COCO_SAMPLE.is_dir(), reason="shared COCO sample not present")
def test_mixed_batch_of_2d_and_3d_people():
    codec2d, codec3d = Pose2DCodec(), Pose3DCodec()
    size = (128, 96)
    coco = CocoKeypoints(
        COCO_SAMPLE / "person_keypoints_sample.json", COCO_SAMPLE, size, encoder=codec2d.encode
    )
    muco = Multi3DDataset(
        FIXTURE / "annotations.json",
        FIXTURE / "images",
        size,
        encoder=codec2d.encode,
        encoder3d=codec3d.encode,
        coco_from_joints=COCO17_FROM_JOINTS21,
    )
    mixed = mixed_dataset([With3DFields(coco, codec3d.encode), muco])
    assert len(mixed) == 6
    batch = collate_pose3d([mixed[0], mixed[4]])
    assert batch["locmaps"].shape == (2, 63, 12, 16) and batch["heatmaps"].shape[0] == 2
    assert not batch["has_3d"][0].any() and batch["has_3d"][1].all()
    assert batch["locmap_weights"][0].sum() == 0 and batch["locmap_weights"][1].sum() > 0
    with pytest.raises(TypeError, match="With3DFields"):
        mixed_dataset([coco])


def test_random_augment_moves_camera_and_3d_exactly():
    """After random scale/rotation/flip the joints still project onto their 2D points with the
    new camera, bone lengths are unchanged, and COCO keypoints follow the same left/right swap."""
    from selecsls.datasets.augment3d import Augment3D
    from selecsls.heads.skeletons import COCO17_FLIP, JOINTS21_FLIP, JOINTS21_PARENTS

    flips = 0
    for seed in range(6):
        augment = Augment3D((96, 80), rotation=30, seed=seed)
        dataset = Multi3DDataset(
            FIXTURE / "annotations.json",
            FIXTURE / "images",
            (96, 80),
            augment=augment,
            coco_from_joints=COCO17_FROM_JOINTS21,
            flip_permutations=(COCO17_FLIP, JOINTS21_FLIP),
        )
        plain = Multi3DDataset(FIXTURE / "annotations.json", FIXTURE / "images", (96, 80))
        sample, reference = dataset[0], plain[0]
        flips += bool(np.linalg.det(sample["transform"][:, :2].numpy()) < 0)
        joints, points = sample["joints3d"].numpy(), sample["points2d"].numpy()
        f, c = sample["camera_f"].numpy(), sample["camera_c"].numpy()
        for p in range(len(joints)):
            ok = points[p, :, 2] > 0
            np.testing.assert_allclose(project(joints[p, ok], f, c), points[p, ok, :2], atol=0.05)
            bones = [j for j, parent in enumerate(JOINTS21_PARENTS) if parent >= 0]
            lengths = np.linalg.norm(
                joints[p, bones] - joints[p, np.array(JOINTS21_PARENTS)[bones]], axis=-1
            )
            before = reference["joints3d"][p].numpy()
            expected = np.linalg.norm(
                before[bones] - before[np.array(JOINTS21_PARENTS)[bones]], axis=-1
            )
            np.testing.assert_allclose(np.sort(lengths), np.sort(expected), rtol=1e-5)
            for k, j in enumerate(COCO17_FROM_JOINTS21):
                if j >= 0 and sample["keypoints"][p, k, 2] > 0 and points[p, j, 2] > 0:
                    np.testing.assert_allclose(
                        sample["keypoints"][p, k, :2], points[p, j, :2], atol=1e-3
                    )
    assert 0 < flips < 6
    with pytest.raises(DatasetError, match="flip_permutations"):
        dataset.flip_permutations = None
        for index in range(2):
            for _ in range(8):
                dataset[index]
