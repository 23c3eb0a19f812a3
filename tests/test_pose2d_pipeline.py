"""The fast training pipeline gives the targets of the straightforward one: windowed encode vs a
full-map reference, one-warp TrainAugment vs the albumentations chain it replaced."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from selecsls.datasets.augment import (
    PAD_VALUE,
    TrainAugment,
    clean_visibility,
    flip_horizontal,
    train_matrix,
    warp_with_frame,
)
from selecsls.datasets.coco import CocoKeypoints
from selecsls.heads.pose2d.codec import GAUSSIAN_CUTOFF, Pose2DCodec
from selecsls.heads.skeletons import COCO17_FLIP, LIMBS18, OPENPOSE18_NAMES, coco17_to_openpose18

NUM_KEYPOINTS = len(OPENPOSE18_NAMES)


def reference_encode(codec: Pose2DCodec, keypoints, input_size, ignore_mask):
    """Every Gaussian and every limb band evaluated on the whole map (the first implementation)."""
    width, height = codec.map_size(input_size)
    people = coco17_to_openpose18(np.asarray(keypoints, np.float32).reshape(-1, 17, 3))
    heatmaps = np.zeros((NUM_KEYPOINTS + 1, height, width), np.float32)
    pafs = np.zeros((len(LIMBS18), 2, height, width), np.float32)
    count = np.zeros((len(LIMBS18), height, width), np.float32)
    xs, ys = codec.cell_centres(width), codec.cell_centres(height)
    for person in people:
        for k, (x, y, v) in enumerate(person):
            if v > 0:
                gauss = np.exp(-0.5 / codec.sigma**2 * ((ys[:, None] - y) ** 2 + (xs - x) ** 2))
                heatmaps[k] = np.maximum(heatmaps[k], gauss)
        cells = (person[:, :2] - (codec.stride - 1) / 2) / codec.stride
        for i, (a, b) in enumerate(LIMBS18):
            vec = cells[b] - cells[a]
            length = np.hypot(*vec)
            if person[a, 2] <= 0 or person[b, 2] <= 0 or length <= 1e-6:
                continue
            unit = vec / length
            dx = np.arange(width)[None, :] - cells[a, 0]
            dy = np.arange(height)[:, None] - cells[a, 1]
            along, across = dx * unit[0] + dy * unit[1], np.abs(dx * unit[1] - dy * unit[0])
            reach = codec.paf_half_width
            band = (along >= -reach) & (along <= length + reach) & (across <= reach)
            pafs[i] += band * unit[:, None, None]
            count[i] += band
    heatmaps[NUM_KEYPOINTS] = 1 - heatmaps[:NUM_KEYPOINTS].max(0)
    pafs = (pafs / np.maximum(count, 1)[:, None]).reshape(-1, height, width)
    mask = np.ones((1, height, width), np.float32)
    if ignore_mask is not None:
        padded = np.zeros((height * codec.stride, width * codec.stride), np.float32)
        rows, cols = (
            min(padded.shape[0], ignore_mask.shape[0]),
            min(padded.shape[1], ignore_mask.shape[1]),
        )
        padded[:rows, :cols] = ignore_mask[:rows, :cols] > 0
        blocks = padded.reshape(height, codec.stride, width, codec.stride).mean((1, 3))
        mask[0] = blocks <= 0.5
    return {"heatmaps": heatmaps, "pafs": pafs, "mask": mask}


def random_people(rng, count: int, width: int, height: int) -> np.ndarray:
    """People of random size anywhere on the image (some keypoints unlabelled)."""
    people = np.zeros((count, 17, 3), np.float32)
    people[..., 0] = rng.uniform(-0.5, width - 0.5, (count, 17))
    people[..., 1] = rng.uniform(-0.5, height - 0.5, (count, 17))
    centre = people[:, :1, :2]
    people[..., :2] = centre + (people[..., :2] - centre) * rng.uniform(0.05, 1, (count, 1, 1))
    people[..., 2] = rng.choice([0, 1, 2], (count, 17), p=[0.3, 0.2, 0.5])
    return people


@pytest.mark.parametrize("input_size", [(368, 368), (128, 96), (40, 32), (33, 47)])
def test_windowed_encode_matches_the_full_map_reference(input_size):
    rng = np.random.default_rng(sum(input_size))
    codec = Pose2DCodec()
    width, height = input_size
    for trial in range(12):
        people = random_people(rng, int(rng.integers(0, 7)), width, height)
        if trial == 1 and len(people):
            people[0, 5, :2] = people[0, 7, :2]  # a zero-length limb (shoulder on elbow)
        mask = (rng.random((height, width)) < 0.3).astype(np.uint8) if trial % 2 else None
        fast = codec.encode(people, input_size, mask)
        slow = reference_encode(codec, people, input_size, mask)
        for key in ("heatmaps", "pafs", "mask"):
            assert fast[key].dtype == np.float32 and fast[key].shape == slow[key].shape, key
        # windows: the cut Gaussian tails are below the cutoff; PAFs and mask are exact
        assert np.abs(fast["heatmaps"] - slow["heatmaps"]).max() <= GAUSSIAN_CUTOFF
        assert np.abs(fast["pafs"] - slow["pafs"]).max() < 1e-5
        np.testing.assert_array_equal(fast["mask"], slow["mask"])
        if len(people) and (people[..., 2] > 0).any():
            assert fast["heatmaps"][:NUM_KEYPOINTS].max() > 0.5  # not trivially empty


def albumentations_chain(image, keypoints, mask, size, scale, angle, crop, flip):
    """TrainAugment's former geometry: LongestMaxSize -> Affine -> PadIfNeeded -> crop -> flip."""
    width, height = size
    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": PAD_VALUE, "fill_mask": 0}
    steps = [
        A.LongestMaxSize(max_size=max(width, height)),
        A.Affine(scale=(scale, scale), rotate=(angle, angle), keep_ratio=True, p=1.0, **border),
        A.PadIfNeeded(min_height=height, min_width=width, **border),
    ]
    params = A.KeypointParams(format="xy", remove_invisible=False)
    out = A.Compose(steps, keypoint_params=params)(
        image=image, mask=mask, keypoints=keypoints.reshape(-1, 3)
    )
    image, mask = out["image"], out["mask"]
    points = np.asarray(out["keypoints"], np.float32).reshape(keypoints.shape)
    x0 = int(crop[0] * (image.shape[1] - width + 1))
    y0 = int(crop[1] * (image.shape[0] - height + 1))
    image, mask = image[y0 : y0 + height, x0 : x0 + width], mask[y0 : y0 + height, x0 : x0 + width]
    points[..., 0] -= x0
    points[..., 1] -= y0
    points = clean_visibility(points, width, height)
    if flip:
        image, points, mask = flip_horizontal(image, points, mask, COCO17_FLIP)
    return image, points, mask


def test_one_warp_matches_the_albumentations_chain(shared_data):
    folder = shared_data / "coco_sample"
    dataset = CocoKeypoints(folder / "person_keypoints_sample.json", folder)
    rng = np.random.default_rng(0)
    for trial in range(12):
        image, keypoints, mask, _ = dataset.load(trial % len(dataset))
        size = [(368, 368), (160, 128), (128, 200)][trial % 3]
        scale, angle = rng.uniform(0.6, 1.4), rng.uniform(-30, 30)
        crop, flip = (rng.random(), rng.random()), bool(trial % 2)
        old_image, old_points, old_mask = albumentations_chain(
            image, keypoints, mask, size, scale, angle, crop, flip
        )
        matrix, frame = train_matrix(
            (image.shape[1], image.shape[0]), size, scale, angle, crop, flip
        )
        new_image, new_mask = warp_with_frame(image, mask, matrix, frame, size)
        points = keypoints.copy()
        points[..., :2] = points[..., :2] @ matrix[:, :2].T + matrix[:, 2]
        if flip:
            points = points[:, list(COCO17_FLIP)]
        points = clean_visibility(points, *size)
        assert new_image.shape == old_image.shape and new_mask.shape == old_mask.shape
        # albumentations scales keypoints without the half-pixel shift its resize applies to
        # pixels, so the chain's points sit up to ~0.8 px off its own image; ours follow theirs
        both = (old_points[..., 2] > 0) & (points[..., 2] > 0)
        assert np.abs(old_points[..., :2] - points[..., :2])[both].max() < 1.0
        assert ((old_points[..., 2] > 0) != (points[..., 2] > 0)).sum() <= 1  # a border case
        # one resampling instead of two: the same picture up to interpolation
        difference = np.abs(old_image.astype(int) - new_image.astype(int)).mean()
        assert difference < (4 if size == (368, 368) else 15), difference
        assert (old_mask != new_mask).mean() < 0.005


def test_train_augment_is_deterministic_and_pads_outside_the_frame():
    image = np.full((100, 300, 3), 255, np.uint8)  # wide: the fitted frame is a band
    people = np.zeros((1, 17, 3), np.float32)
    people[0, :, :2], people[0, :, 2] = (150, 50), 2
    people[0, 16, :2] = (150, 2)  # near the top edge: zoomed into the padding rows (y ~ 26)
    zoom = {"scale": (1.4, 1.4), "rotation": 0, "flip_probability": 0, "colour": False}
    outputs = [
        TrainAugment((96, 96), COCO17_FLIP, **zoom, seed=7)(
            image, people, np.zeros((100, 300), np.uint8)
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    out, points, _ = outputs[0]
    # 300x100 fitted to 96x32 (centred rows 32..63), then zoomed 1.4x about its centre: the
    # picture would reach rows 25..70, but the fitted frame is kept, so rows < 32 are padding
    assert (out[:30] == PAD_VALUE).all() and (out[66:] == PAD_VALUE).all()
    assert (out[36:60] == 255).all()
    # pixel centres: x' = (x + 0.5) * 0.32 - 0.5 = 47.66 (15.66 + 32 rows), then 1.4x about
    # the frame's centre (47.5, 47.5)
    np.testing.assert_allclose(points[0, 0, :2], (47.724, 47.724), atol=1e-4)
    # a keypoint in the padding is unlabelled (no picture of the person there), the rest stay
    assert (points[0, 16] == 0).all() and (points[0, :16, 2] == 2).all()
