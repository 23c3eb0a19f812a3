"""Loaders for the 2D keypoint formats beyond COCO, on the real samples in shared/data."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from selecsls.datasets.augment import TrainAugment
from selecsls.datasets.coco import CocoKeypoints, DatasetError, read_rgb
from selecsls.datasets.keypoint_formats import FORMATS, get_format, open_keypoint_dataset
from selecsls.datasets.mpii import MpiiKeypoints, to_coco
from selecsls.heads.pose2d.codec import Pose2DCodec

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = DATA / "pose_samples"
CROWDPOSE_JSON = SAMPLES / "crowdpose" / "test_crowdpose.json"
MPII_JSON = SAMPLES / "mpii" / "test_mpii.json"
HUMANART_JSON = SAMPLES / "humanart" / "test_humanart.json"
POSETRACK = SAMPLES / "posetrack18"
POSETRACK_JSON = POSETRACK / "annotations" / "test_posetrack18_val.json"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared pose samples not present")

# hand-written flips (keypoint k of the mirrored person is keypoint FLIP[k] of the original):
# CrowdPose pairs left/right limb joints in turn, head and neck stay; MPII runs right leg, left
# leg, pelvis, thorax, neck, head, right arm, left arm
CROWDPOSE14_FLIP = (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13)
MPII16_FLIP = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def labelled_people(data: dict, image_id: int, field: str = "keypoints") -> list[dict]:
    """The json's people the loader must return for one image (not crowd, count > 0)."""
    return [
        a
        for a in data["annotations"]
        if a["image_id"] == image_id and not a.get("iscrowd") and a.get("num_" + field, 0) > 0
    ]


@pytest.mark.parametrize(
    "name, json_path, image_dir, count, images",
    [
        (
            "coco",
            DATA / "coco_sample" / "person_keypoints_sample.json",
            DATA / "coco_sample",
            17,
            4,
        ),
        ("crowdpose", CROWDPOSE_JSON, SAMPLES / "crowdpose", 14, 2),
        ("mpii", MPII_JSON, SAMPLES / "mpii", 16, 5),
        ("humanart", HUMANART_JSON, SAMPLES / "humanart", 21, 3),
        ("posetrack18", POSETRACK_JSON, POSETRACK, 17, 3),
    ],
)
def test_each_format_loads_its_sample(name, json_path, image_dir, count, images):
    dataset = open_keypoint_dataset(name, json_path, image_dir, input_size=(128, 96))
    assert len(dataset) == images and dataset.num_keypoints == count
    assert dataset.skeleton_name == get_format(name).skeleton
    data = json.loads(json_path.read_text())
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (3, 96, 128) and sample["ignore_mask"].shape == (96, 128)
        if name != "mpii":  # MPII people: see the MPII tests
            field = get_format(name).keypoints_field
            people = labelled_people(data, sample["image_id"], field)
            assert sample["keypoints"].shape == (len(people), count, 3)
    assert set(FORMATS) == {
        "coco",
        "crowdpose",
        "mpii",
        "aic",
        "posetrack18",
        "humanart",
        "ochuman",
    }


def test_unknown_format_lists_the_valid_ones():
    with pytest.raises(ValueError, match="crowdpose.*mpii.*humanart") as err:
        open_keypoint_dataset("crowdpos", CROWDPOSE_JSON, SAMPLES / "crowdpose")
    assert not isinstance(err.value, DatasetError) or "unknown" in str(err.value)


def test_crowdpose_through_coco17_is_one_clear_error():
    with pytest.raises(DatasetError) as err:
        CocoKeypoints(
            CROWDPOSE_JSON, SAMPLES / "crowdpose", num_keypoints=17, skeleton_name="coco17"
        )
    message = str(err.value)
    for part in ("test_crowdpose.json", "14 keypoints", "coco17 has 17", "crowdpose14"):
        assert part in message, message
    assert "reshape" not in message
    # the same through the table, a model configured for COCO-17 overriding the row
    with pytest.raises(DatasetError, match="test_crowdpose.json.*14.*coco17.*17"):
        open_keypoint_dataset(
            "crowdpose",
            CROWDPOSE_JSON,
            SAMPLES / "crowdpose",
            num_keypoints=17,
            skeleton_name="coco17",
        )


def test_one_short_annotation_names_file_and_id(tmp_path):
    """Without num_keypoints the category's 14 names decide; a 13-point list is named."""
    data = json.loads(CROWDPOSE_JSON.read_text())
    data["annotations"][2]["keypoints"] = data["annotations"][2]["keypoints"][:39]
    path = write_json(tmp_path / "short.json", data)
    with pytest.raises(DatasetError) as err:
        CocoKeypoints(path, SAMPLES / "crowdpose")
    message = str(err.value)
    assert "short.json" in message and str(data["annotations"][2]["id"]) in message
    assert "13 keypoints" in message and "declares 14" in message
    data["annotations"][2]["keypoints"] = data["annotations"][2]["keypoints"][:38]  # not triples
    with pytest.raises(DatasetError, match="x, y, v triples"):
        CocoKeypoints(write_json(tmp_path / "ragged.json", data), SAMPLES / "crowdpose")


def test_crowdpose_crowd_index_kept():
    dataset = open_keypoint_dataset("crowdpose", CROWDPOSE_JSON, SAMPLES / "crowdpose")
    assert dataset.crowd_indices() == {106848: 0.33, 103319: 0.39}
    assert dataset.image_info(106848)["crowdIndex"] == 0.33
    assert dataset.keypoint_names[-2:] == ("head", "neck")
    coco = open_keypoint_dataset(
        "coco", DATA / "coco_sample" / "person_keypoints_sample.json", DATA / "coco_sample"
    )
    assert coco.crowd_indices() == {}


def polygon_inside(xs: list, ys: list, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(len(rows), len(cols)) bool: those pixel centres inside one polygon, by matplotlib (not
    the loader's cv2)."""
    grid_y, grid_x = np.meshgrid(rows, cols, indexing="ij")
    centres = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    inside = PolygonPath(np.stack([xs, ys], axis=1)).contains_points(centres)
    return inside.reshape(len(rows), len(cols))


def test_posetrack_ignore_polygons_in_the_ignore_mask(tmp_path):
    data = json.loads(POSETRACK_JSON.read_text())
    image_id = 10034180000  # 9 polygons, one labelled person
    info = next(i for i in data["images"] if i["id"] == image_id)
    dataset = open_keypoint_dataset("posetrack18", POSETRACK_JSON, POSETRACK)
    _, keypoints, mask, _ = dataset.load(dataset.image_ids.index(image_id))
    height, width = mask.shape
    assert (height, width) == (info["height"], info["width"]) and len(keypoints) == 1
    # every 3rd pixel (matplotlib on all 2 M pixels of 10 polygons takes seconds)
    rows, cols = np.arange(0, height, 3), np.arange(0, width, 3)
    sampled = mask[np.ix_(rows, cols)]
    polygons = list(zip(info["ignore_regions_x"], info["ignore_regions_y"]))
    largest = polygon_inside(*max(polygons, key=len), rows, cols)
    interior = ndimage.binary_erosion(largest)  # 3 px in from the edge
    assert interior.sum() > 300 and sampled[interior].all()
    union = np.zeros_like(largest)
    for xs, ys in polygons:
        union |= polygon_inside(xs, ys, rows, cols)
    far_outside = ~ndimage.binary_dilation(union, iterations=2)  # 6 px out
    assert far_outside.mean() > 0.3 and not sampled[far_outside].any()

    # the polygons reach the loss mask (no crowd or unlabelled people in this frame otherwise)
    codec = Pose2DCodec(skeleton="posetrack18")
    encoded = open_keypoint_dataset(
        "posetrack18", POSETRACK_JSON, POSETRACK, input_size=(192, 112), encoder=codec.encode
    )
    loss_mask = encoded[encoded.image_ids.index(image_id)]["mask"]
    assert 0.1 < 1 - loss_mask.mean().item() < 0.5
    bare = copy.deepcopy(data)
    for image in bare["images"]:
        image.pop("ignore_regions_x"), image.pop("ignore_regions_y")
    plain = open_keypoint_dataset(
        "posetrack18",
        write_json(tmp_path / "bare.json", bare),
        POSETRACK,
        input_size=(192, 112),
        encoder=codec.encode,
    )
    assert plain[plain.image_ids.index(image_id)]["mask"].all()


def test_posetrack_prefix_unlabelled_frames_and_bad_polygons(tmp_path):
    per_video = POSETRACK / "annotations" / "val" / "003418_mpii_test.json"
    # file_name "images/val/...": found from the dataset root or from its images folder
    assert open_keypoint_dataset("posetrack18", per_video, POSETRACK).strip_prefix == ""
    inner = open_keypoint_dataset("posetrack18", per_video, POSETRACK / "images")
    assert inner.strip_prefix == "images/" and inner[0]["keypoints"].shape == (1, 17, 3)
    data = json.loads(POSETRACK_JSON.read_text())
    data["images"][0]["is_labeled"] = False  # a frame nobody annotated: no training signal
    dataset = open_keypoint_dataset("posetrack18", write_json(tmp_path / "u.json", data), POSETRACK)
    assert data["images"][0]["id"] not in dataset.image_ids and len(dataset) == 2
    # two overlapping squares: their overlap is ignored too (a union, not even-odd filling)
    data["images"][1]["ignore_regions_x"] = [[100, 300, 300, 100], [200, 400, 400, 200]]
    data["images"][1]["ignore_regions_y"] = [[100, 100, 300, 300], [200, 200, 400, 400]]
    dataset = open_keypoint_dataset("posetrack18", write_json(tmp_path / "o.json", data), POSETRACK)
    mask = dataset.load(dataset.image_ids.index(data["images"][1]["id"]))[2]
    assert mask[202:299, 202:299].all()  # the overlap
    assert mask[150, 150] == mask[350, 350] == 1 and mask[150, 350] == mask[350, 150] == 0
    data["images"][1]["ignore_regions_y"] = data["images"][1]["ignore_regions_y"][:-1]
    with pytest.raises(DatasetError, match=r"b\.json: image 10094730000: ignore_regions_x has 2"):
        open_keypoint_dataset("posetrack18", write_json(tmp_path / "b.json", data), POSETRACK)


def test_humanart_prefix_and_21_point_field(tmp_path):
    data = json.loads(HUMANART_JSON.read_text())
    dataset = open_keypoint_dataset("humanart", HUMANART_JSON, SAMPLES / "humanart")
    assert dataset.strip_prefix == "HumanArt/images/" and dataset.keypoints_field == "keypoints_21"
    by_id = {a["id"]: a for a in data["annotations"]}
    for index, image_id in enumerate(dataset.image_ids):
        image, keypoints, _, _ = dataset.load(index)
        expected = [a["keypoints_21"] for a in labelled_people(data, image_id, "keypoints_21")]
        np.testing.assert_allclose(keypoints.reshape(len(expected), -1), np.array(expected))
        assert image.shape[:2] == (
            dataset.image_info(image_id)["height"],
            dataset.image_info(image_id)["width"],
        )
    assert dataset.keypoint_names[17:] == ("left_finger", "right_finger", "left_toe", "right_toe")

    # the default field holds 17 of the 21 declared points: a clear error pointing at both fields
    with pytest.raises(DatasetError, match="keypoints_21.*num_keypoints=17"):
        CocoKeypoints(HUMANART_JSON, SAMPLES / "humanart", strip_prefix="auto")
    coco17 = CocoKeypoints(
        HUMANART_JSON, SAMPLES / "humanart", num_keypoints=17, strip_prefix="HumanArt/images/"
    )
    assert coco17.load(0)[1].shape[1:] == (17, 3) and coco17.keypoint_names is None
    # without the prefix handling the files are missing, and the message says what to do
    with pytest.raises(DatasetError, match="missing.*strip_prefix='auto'"):
        CocoKeypoints(HUMANART_JSON, SAMPLES / "humanart", keypoints_field="keypoints_21")

    # "has keypoints" follows num_keypoints_21: a person with none of the 21 is masked instead
    ann = next(a for a in data["annotations"] if a["image_id"] == 15000000000590)
    ann["num_keypoints_21"] = 0
    path = write_json(tmp_path / "humanart.json", data)
    edited = open_keypoint_dataset("humanart", path, SAMPLES / "humanart")
    _, keypoints, mask, _ = edited.load(edited.image_ids.index(15000000000590))
    assert len(keypoints) == 1 and mask.any()
    np.testing.assert_allclose(keypoints[0].reshape(-1), by_id[ann["id"] + 1]["keypoints_21"])


def mpii_entries() -> list[dict]:
    """The sample's 5 people plus a second person on the first image (the sample has one person
    per image): its joints shifted 40 px left, two of them unlabelled."""
    entries = json.loads(MPII_JSON.read_text())
    extra = copy.deepcopy(entries[0])
    extra["joints"] = [[x - 40.0, y] for x, y in extra["joints"]]
    extra["joints_vis"][3] = extra["joints_vis"][9] = 0
    return entries + [extra]


def test_mpii_groups_people_by_image(tmp_path):
    entries = mpii_entries()
    path = write_json(tmp_path / "mpii.json", entries)
    dataset = MpiiKeypoints(path, SAMPLES / "mpii", input_size=(160, 128), num_keypoints=16)
    names = sorted({e["image"] for e in entries})
    assert len(dataset) == 5 and dataset.image_ids == [1, 2, 3, 4, 5]
    for index, image_id in enumerate(dataset.image_ids):
        image, keypoints, mask, info = dataset.load(index)
        assert info["file_name"] == names[image_id - 1]
        people = [e for e in entries if e["image"] == info["file_name"]]
        assert keypoints.shape == (len(people), 16, 3) and not mask.any()
        for person, entry in zip(keypoints, people):
            labelled = np.array(entry["joints_vis"]) > 0
            # 1-based Matlab pixels -> 0-based
            np.testing.assert_allclose(
                person[labelled, :2], np.array(entry["joints"])[labelled] - 1
            )
            assert np.all(person[labelled, 2] == 2) and not person[~labelled].any()
        sample = dataset[index]
        assert sample["image_id"] == image_id and sample["orig_size"] == image.shape[:2]
        assert sample["image"].shape == (3, 128, 160) and not sample["ignore_mask"].any()
    assert dataset.load(names.index("005808361.jpg"))[1].shape[0] == 2
    raw = MpiiKeypoints(path, SAMPLES / "mpii", one_based=False)
    first = raw.load(names.index(entries[0]["image"]))[1][0]  # its first person: entries[0]
    np.testing.assert_allclose(first[:, :2], np.array(entries[0]["joints"]))
    with pytest.raises(DatasetError, match="mpii.json.*16 keypoints.*coco17 has 17.*mpii16"):
        open_keypoint_dataset(
            "mpii", path, SAMPLES / "mpii", num_keypoints=17, skeleton_name="coco17"
        )


def test_mpii_to_coco_loads_in_pycocotools(tmp_path):
    entries = mpii_entries()
    converted = to_coco(entries, SAMPLES / "mpii", keypoint_names=[f"j{k}" for k in range(16)])
    path = write_json(tmp_path / "mpii_coco.json", converted)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    assert len(coco.imgs) == 5 and len(coco.anns) == 6
    first = coco.imgs[sorted({e["image"] for e in entries}).index("005808361.jpg") + 1]
    assert (first["height"], first["width"]) == read_rgb(SAMPLES / "mpii" / "005808361.jpg").shape[
        :2
    ]
    assert len(coco.getAnnIds(imgIds=first["id"])) == 2
    ann = coco.anns[1]
    side = 200 * entries[0]["scale"]
    np.testing.assert_allclose(ann["bbox"], [965 - side / 2, 339 - side / 2, side, side])
    assert ann["num_keypoints"] == 16 and coco.anns[6]["num_keypoints"] == 14
    # OKS tools consume it: the ground truth scored against itself is AP 1
    results = [{**a, "score": 1.0} for a in coco.dataset["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluation.params.kpt_oks_sigmas = np.full(16, 0.08)
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)
    # deterministic ids whatever the entries' order
    shuffled = to_coco(entries[::-1])
    assert {i["file_name"]: i["id"] for i in shuffled["images"]} == {
        i["file_name"]: i["id"] for i in converted["images"]
    }


def test_mpii_bad_entries_name_file_entry_and_key(tmp_path):
    entries = mpii_entries()
    del entries[2]["joints"]
    with pytest.raises(DatasetError, match=r"bad\.json: entry 2 has no 'joints'"):
        MpiiKeypoints(write_json(tmp_path / "bad.json", entries), SAMPLES / "mpii")
    entries = mpii_entries()
    entries[1]["joints_vis"] = entries[1]["joints_vis"][:15]
    with pytest.raises(DatasetError, match=r"vis\.json: entry 1: 'joints_vis'.*16"):
        MpiiKeypoints(write_json(tmp_path / "vis.json", entries), SAMPLES / "mpii")
    with pytest.raises(DatasetError, match="list of person entries"):
        MpiiKeypoints(CROWDPOSE_JSON, SAMPLES / "mpii")


@pytest.mark.parametrize(
    "name, json_path, image_dir, flip",
    [
        ("crowdpose", CROWDPOSE_JSON, SAMPLES / "crowdpose", CROWDPOSE14_FLIP),
        ("mpii", MPII_JSON, SAMPLES / "mpii", MPII16_FLIP),
    ],
)
def test_flip_with_the_given_permutation(name, json_path, image_dir, flip):
    """The same random draw with and without the flip: the flipped people are the mirrored
    people with left and right swapped by the permutation."""
    dataset = open_keypoint_dataset(name, json_path, image_dir)
    image, keypoints, mask, _ = dataset.load(0)
    assert len(keypoints) > 0
    outputs = []
    for probability in (0.0, 1.0):
        augment = TrainAugment((160, 160), flip, flip_probability=probability, colour=False, seed=5)
        outputs.append(augment(image, keypoints, mask))
    (plain_image, plain, _), (flipped_image, flipped, _) = outputs
    expected = plain[:, list(flip)].copy()
    labelled = expected[..., 2] > 0
    assert labelled.sum() >= 5
    expected[..., 0] = np.where(labelled, 159 - expected[..., 0], 0)
    np.testing.assert_allclose(flipped, expected, atol=1e-3)
    difference = np.abs(flipped_image.astype(int) - plain_image[:, ::-1].astype(int))
    assert difference.mean() < 2.0
    # the permutation matters: mirroring without it gives other people
    mirrored = plain.copy()
    mirrored[..., 0] = np.where(plain[..., 2] > 0, 159 - plain[..., 0], 0)
    assert not np.allclose(flipped, mirrored, atol=1.0)
