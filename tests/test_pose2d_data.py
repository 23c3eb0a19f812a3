"""COCO keypoint dataset + augmentation on the real sample: shapes, masks, flips, bad input."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selecsls.datasets.augment import EvalResize, TrainAugment, flip_horizontal
from selecsls.datasets.coco import CocoKeypoints, DatasetError, collate_pose
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.skeletons import COCO17_FLIP, COCO17_NAMES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_SAMPLE = DATA / "coco_sample"
COCO_JSON = COCO_SAMPLE / "person_keypoints_sample.json"
pytestmark = pytest.mark.skipif(not COCO_JSON.is_file(), reason="shared COCO sample not present")


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def sample_json():
    return json.loads(COCO_JSON.read_text())


def test_real_sample_shapes_and_unannotated_people_masked():
    codec = Pose2DCodec()
    dataset = CocoKeypoints(COCO_JSON, COCO_SAMPLE, (512, 320), encoder=codec.encode)
    assert len(dataset) == 4
    unannotated = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        people = [
            a
            for a in dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=sample["image_id"]))
            if a["num_keypoints"] > 0
        ]
        assert sample["image"].shape == (3, 320, 512)
        assert sample["keypoints"].shape == (len(people), 17, 3)
        assert sample["heatmaps"].shape == (19, 40, 64) and sample["pafs"].shape == (38, 40, 64)
        assert sample["mask"].shape == (1, 40, 64) and sample["ignore_mask"].shape == (320, 512)
        for ann in dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=sample["image_id"])):
            if ann["num_keypoints"] == 0:  # a person without keypoints: pixels ignored
                unannotated += 1
                x, y, w, h = (v * sample["transform"][0, 0].item() for v in ann["bbox"])
                box = sample["ignore_mask"][int(y) : int(y + h) + 1, int(x) : int(x + w) + 1]
                assert box.float().mean() > 0.2
    assert unannotated == 2
    batch = collate_pose([dataset[0], dataset[1]])
    assert batch["heatmaps"].shape == (2, 19, 40, 64) and len(batch["keypoints"]) == 2


def test_crowd_region_masked(tmp_path, sample_json):
    data = copy.deepcopy(sample_json)
    image = data["images"][0]
    data["images"], data["annotations"] = [image], []
    # a crowd region given as uncompressed RLE: the left 64 columns of the image
    h, w = image["height"], image["width"]
    counts = [0, 64 * h, (w - 64) * h]
    data["annotations"].append({
        "id": 1, "image_id": image["id"], "category_id": 1, "iscrowd": 1, "area": 64.0 * h,
        "bbox": [0, 0, 64, h], "segmentation": {"size": [h, w], "counts": counts},
        "keypoints": [0] * 51, "num_keypoints": 0,
    })  # fmt: skip
    path = write_json(tmp_path / "crowd.json", data)
    codec = Pose2DCodec()
    sample = CocoKeypoints(path, COCO_SAMPLE, (320, 320), encoder=codec.encode)[0]
    scale = 320 / w  # letterboxed: the image fills the top int(h * scale) rows
    rows, cols = int(h * scale) - 1, int(64 * scale)
    assert sample["ignore_mask"][:rows, : cols - 1].all()
    assert not sample["ignore_mask"][:, cols + 1 :].any()
    assert not sample["ignore_mask"][rows + 2 :].any()  # padding is not ignored
    assert sample["keypoints"].shape == (0, 17, 3)
    assert sample["mask"][0, : rows // 8, : cols // 8 - 1].sum() == 0
    assert sample["mask"][0, :, cols // 8 + 1 :].all()


def test_bad_inputs(tmp_path, sample_json):
    with pytest.raises(DatasetError, match="not found"):
        CocoKeypoints(tmp_path / "none.json", COCO_SAMPLE)
    with pytest.raises(DatasetError, match="image folder not found"):
        CocoKeypoints(COCO_JSON, tmp_path / "no_images")
    # an instances-style json: no keypoints anywhere
    data = copy.deepcopy(sample_json)
    for category in data["categories"]:
        category.pop("keypoints")
    for ann in data["annotations"]:
        ann.pop("keypoints")
        ann.pop("num_keypoints")
    with pytest.raises(DatasetError, match="keypoints"):
        CocoKeypoints(write_json(tmp_path / "instances.json", data), COCO_SAMPLE)
    # images listed but missing on disk
    data = copy.deepcopy(sample_json)
    data["images"][1]["file_name"] = "does_not_exist.jpg"
    with pytest.raises(DatasetError, match="does_not_exist.jpg"):
        CocoKeypoints(write_json(tmp_path / "missing.json", data), COCO_SAMPLE)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises((DatasetError, ValueError)):
        CocoKeypoints(tmp_path / "broken.json", COCO_SAMPLE)


def test_image_with_zero_people(tmp_path, sample_json):
    data = copy.deepcopy(sample_json)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 785]
    codec = Pose2DCodec()
    dataset = CocoKeypoints(
        write_json(tmp_path / "empty.json", data), COCO_SAMPLE, (256, 256), encoder=codec.encode
    )
    sample = dataset[dataset.image_ids.index(785)]
    assert sample["keypoints"].shape == (0, 17, 3)
    assert np.all(sample["heatmaps"][18].numpy() == 1) and not sample["pafs"].any()
    assert sample["mask"].all()
    keypoints, scores = codec.decode(sample["heatmaps"], sample["pafs"])
    assert len(keypoints) == 0


def test_flip_swaps_left_and_right():
    image = np.zeros((40, 60, 3), np.uint8)
    person = np.zeros((1, 17, 3), np.float32)
    left_wrist, right_wrist = COCO17_NAMES.index("left_wrist"), COCO17_NAMES.index("right_wrist")
    person[0, left_wrist] = (10, 20, 2)
    person[0, right_wrist] = (50, 22, 1)
    _, flipped, _ = flip_horizontal(image, person, np.zeros((40, 60), np.uint8), COCO17_FLIP)
    # the mirrored person's left wrist is where the right wrist was, mirrored
    np.testing.assert_allclose(flipped[0, left_wrist], (59 - 50, 22, 1))
    np.testing.assert_allclose(flipped[0, right_wrist], (59 - 10, 20, 2))
    assert not flipped[0, 0].any()  # unlabelled stays (0, 0, 0)


def test_train_augment_keeps_image_and_keypoints_together():
    """Paint a dot under every keypoint; after scale/rotation/crop/flip it is still there."""
    rng = np.random.default_rng(0)
    image = np.zeros((240, 320, 3), np.uint8)
    people = np.zeros((2, 17, 3), np.float32)
    people[..., 0] = rng.uniform(20, 300, (2, 17))
    people[..., 1] = rng.uniform(20, 220, (2, 17))
    people[..., 2] = 2
    people[0, 3, 2] = 0
    for x, y, _ in people.reshape(-1, 3):
        row, col = int(round(y)), int(round(x))
        image[row - 2 : row + 3, col - 2 : col + 3] = (0, 255, 0)  # green: padding has red
    for flip in (0.0, 1.0):
        augment = TrainAugment((160, 128), COCO17_FLIP, flip_probability=flip, colour=False, seed=3)
        out, points, mask = augment(image, people, np.zeros((240, 320), np.uint8))
        assert (
            out.shape == (128, 160, 3) and points.shape == (2, 17, 3) and mask.shape == (128, 160)
        )
        inside = points[..., 2] > 0
        # the unlabelled keypoint 3 stays unlabelled, at its mirrored index under the flip
        assert inside.sum() > 5 and points[0, COCO17_FLIP[3] if flip else 3, 2] == 0
        green_y, green_x = np.nonzero((out[..., 1] > 100) & (out[..., 0] < 40))
        for x, y, _ in points[inside]:
            if min(x, y, 159 - x, 127 - y) < 3:
                continue  # a dot cut by the image border
            assert np.hypot(green_x - x, green_y - y).min() < 1.0
        outside = (points[..., 0] == 0) & (points[..., 1] == 0)
        assert np.all(points[..., 2][outside] == 0)


def test_each_loader_worker_gets_its_own_augmentation(monkeypatch):
    import torch.utils.data

    image = np.zeros((64, 64, 3), np.uint8)
    people = np.full((1, 17, 3), 2, np.float32)
    people[0, :, :2] = np.linspace(5, 60, 34).reshape(17, 2)
    results = []
    for worker in (0, 1):
        info = type("Info", (), {"id": worker, "seed": 1000 + worker})()
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        augment = TrainAugment((48, 48), COCO17_FLIP, seed=0)  # the same copy in each worker
        results.append(augment(image, people, np.zeros((64, 64), np.uint8))[1])
    assert not np.allclose(results[0], results[1])


def test_eval_resize_matrix_maps_keypoints():
    image = np.zeros((100, 200, 3), np.uint8)
    people = np.array([[[199.0, 99.0, 2.0]] + [[0, 0, 0]] * 16], np.float32)
    out, points, mask, matrix = EvalResize((100, 80))(image, people, np.zeros((100, 200), np.uint8))
    assert out.shape == (80, 100, 3)
    np.testing.assert_allclose(points[0, 0, :2], matrix[:, :2] @ [199.0, 99.0] + matrix[:, 2])
    assert points[0, 0, 0] < 99.5 and points[0, 1, 2] == 0


def test_coco_sample_copied_elsewhere(tmp_path):
    """Any COCO-format json + image folder works (paths are not tied to the shared layout)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for image in json.loads(COCO_JSON.read_text())["images"][:1]:
        shutil.copy(COCO_SAMPLE / image["file_name"], folder)
    data = json.loads(COCO_JSON.read_text())
    data["images"] = data["images"][:1]
    dataset = CocoKeypoints(write_json(tmp_path / "one.json", data), folder, (128, 128))
    assert dataset[0]["image"].shape == (3, 128, 128)


def test_importing_augment_makes_no_network_call():
    """albumentations checks pypi.org for updates on import unless told not to: our import must
    tell it (tests and training run offline). The child process records every URL opened."""
    code = (
        "import urllib.request as u\n"
        "opened = []\n"
        "def record(self, url, *args, **kwargs):\n"
        "    opened.append(getattr(url, 'full_url', url))\n"
        "    raise OSError('offline')\n"
        "u.OpenerDirector.open = record\n"
        "import selecsls.datasets.augment\n"
        "print('opened:', opened)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "opened: []", out.stdout + out.stderr
