"""Synthetic people generator: determinism, COCO format, 2D/3D consistency, occlusion, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.synthetic_people import generate, main
from selecsls.heads.skeletons import COCO17_NAMES, JOINTS21_FROM_COCO17, JOINTS21_NAMES


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    return folder, json.loads(generate(folder, 12, seed=4, size=(256, 192)).read_text())


def test_deterministic_for_a_seed(tmp_path, synthetic):
    folder, data = synthetic
    again = json.loads(generate(tmp_path / "again", 12, seed=4, size=(256, 192)).read_text())
    assert again == data
    for image in data["images"]:
        name = image["file_name"]
        assert (folder / "images" / name).read_bytes() == (
            tmp_path / "again" / "images" / name
        ).read_bytes()
    other = json.loads(generate(tmp_path / "other", 2, seed=5, size=(256, 192)).read_text())
    assert other["annotations"][0]["keypoints"] != data["annotations"][0]["keypoints"]
    # image i depends on (seed, i) only: a shorter run is a prefix
    short = json.loads(generate(tmp_path / "short", 2, seed=4, size=(256, 192)).read_text())
    assert short["images"] == data["images"][:2]


def test_coco_format_and_3d_ground_truth(synthetic):
    folder, data = synthetic
    category = data["categories"][0]
    assert tuple(category["keypoints"]) == COCO17_NAMES
    assert tuple(category["keypoints_3d"]) == JOINTS21_NAMES
    images = {image["id"]: image for image in data["images"]}
    visible = occluded = face_visible = 0
    for ann in data["annotations"]:
        keypoints = np.array(ann["keypoints"], np.float64).reshape(17, 3)
        joints = np.array(ann["keypoints_3d"])
        assert joints.shape == (21, 3) and np.all(joints[:, 2] > 1000)  # mm, in front
        assert ann["num_keypoints"] == int((keypoints[:, 2] > 0).sum())
        x, y, w, h = ann["bbox"]
        assert ann["area"] <= w * h + 1e-6
        camera = images[ann["image_id"]]["camera"]
        # projecting the 3D joints gives the 2D keypoints they share with COCO
        for joint, coco in enumerate(JOINTS21_FROM_COCO17):
            if coco >= 0 and keypoints[coco, 2] > 0:
                uv = np.array(camera["f"]) * joints[joint, :2] / joints[joint, 2] + camera["c"]
                np.testing.assert_allclose(uv, keypoints[coco, :2], atol=0.05)
        visible += int((keypoints[:, 2] == 2).sum())
        occluded += int((keypoints[:, 2] == 1).sum())
        # face points are labelled only where seen, as in COCO (never "labelled but hidden")
        assert not (keypoints[:5, 2] == 1).any() and not keypoints[:5][keypoints[:5, 2] == 0].any()
        face_visible += int((keypoints[:5, 2] == 2).sum())
    assert visible > 50 and occluded > 10  # people and limbs do hide each other
    assert face_visible > 10
    assert len(data["annotations"]) > len(data["images"])  # several people per image


def test_loads_as_a_coco_dataset(synthetic):
    folder, _ = synthetic
    dataset = CocoKeypoints(folder / "annotations.json", folder / "images", (128, 96))
    sample = dataset[0]
    assert sample["image"].shape == (3, 96, 128)
    assert sample["image"].std() > 0.1  # a textured picture, not a blank


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--out", str(out), "--num-images", "2", "--seed", "1", "--size", "96x64"])
    assert code == 0 and "wrote 2 images" in capsys.readouterr().out
    assert json.loads((out / "annotations.json").read_text())["images"][0]["width"] == 96
    assert main(["--out", str(out), "--num-images", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--size", "big"])


def person_heights(data: dict) -> list[float]:
    """Pixel height of each labelled person's keypoints."""
    heights = []
    for ann in data["annotations"]:
        points = np.array(ann["keypoints"], np.float32).reshape(17, 3)
        labelled = points[points[:, 2] > 0]
        if len(labelled) >= 10:
            heights.append(float(np.ptp(labelled[:, 1])))
    return heights


def test_depth_range_sets_the_people_size(tmp_path):
    near = json.loads(
        generate(tmp_path / "near", 8, seed=2, size=(192, 192), depth_range=(2.0, 2.5)).read_text()
    )
    far = json.loads(
        generate(tmp_path / "far", 8, seed=2, size=(192, 192), depth_range=(8.0, 10.0)).read_text()
    )
    assert near["info"]["generator"]["depth_range"] == [2.0, 2.5]
    depths = [
        np.mean(np.array(a["keypoints_3d"])[:, 2]) / 1000 for a in near["annotations"]
    ]  # camera z of the joints: metres from the camera
    assert min(depths) > 1.5 and max(depths) < 3.2
    # 4x farther: about a quarter of the height in pixels
    assert np.median(person_heights(near)) > 2.5 * np.median(person_heights(far))
    with pytest.raises(ValueError, match="depth range"):
        generate(tmp_path / "bad", 1, depth_range=(5.0, 2.0))
