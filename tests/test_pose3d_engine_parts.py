"""Pieces of the pose3d task: per-keypoint 2D masks (loss2d), the 3D targets made in collate, and
the evaluation loop on perfect network outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from selecsls.datasets.mix3d import collate_pose3d, synthetic_people_3d
from selecsls.datasets.muco import Multi3DDataset
from selecsls.datasets.synthetic_people import generate
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.loss import keypoint_masks, pose2d_losses
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.skeletons import COCO17_FROM_JOINTS21, COCO17_NAMES, LIMBS18, OPENPOSE18_NAMES
from selecsls.tools.engine.distributed import DistInfo
from selecsls.tools.engine.tasks.pose3d_data import add_3d_targets, collate_stage1, readout_points
from selecsls.tools.engine.tasks.pose3d_eval import coco_or_none, evaluate_people3d

FIXTURE = Path(__file__).resolve().parent / "data" / "muco_tiny"
NOSE = OPENPOSE18_NAMES.index("nose")
SHOULDER = OPENPOSE18_NAMES.index("right_shoulder")
NECK_NOSE = LIMBS18.index((1, 0))
NECK_SHOULDER = LIMBS18.index((1, 2))


def one_person(x0: float = 20.0) -> np.ndarray:
    """(1, 17, 3) COCO keypoints: a body column at x0..x0+10, y 20..60, no face."""
    person = np.zeros((1, 17, 3), np.float32)
    for k in range(5, 17):
        person[0, k] = (x0 + 10 * (k % 2), 20 + 3 * k, 2)
    return person


def test_unlabelled_keypoint_is_masked_around_its_person_only():
    codec = Pose2DCodec()
    size = (128, 96)
    people = np.concatenate([one_person(20.0), one_person(90.0)])
    unlabelled = np.zeros((2, 17), bool)
    unlabelled[0, :5] = True  # person 0 (made from 3D joints) has no face; person 1 is COCO's
    masks = keypoint_masks(people, unlabelled, size, codec)
    heat, paf = masks["heatmap_mask"], masks["paf_mask"]
    assert heat.shape == (19, 12, 16) and paf.shape == (38, 12, 16)
    cols = codec.cell_centres(16)
    near0 = (cols >= 20 - 14) & (cols <= 30 + 14)  # person 0's box grown by 2 sigma
    rows = codec.cell_centres(12)
    body_rows = (rows >= 35 - 14) & (rows <= 68 + 14)
    region = body_rows[:, None] & near0[None]
    for channel in (NOSE, 18):  # the nose and the background: 0 on person 0 only
        assert (heat[channel][region] == 0).all() and (heat[channel][~region] == 1).all()
    assert (heat[SHOULDER] == 1).all()  # labelled types stay supervised everywhere
    for c in (2 * NECK_NOSE, 2 * NECK_NOSE + 1):
        assert (paf[c][region] == 0).all() and (paf[c][~region] == 1).all()
    assert (paf[2 * NECK_SHOULDER] == 1).all()
    # nobody lacking a type: no mask at all (COCO data is unchanged)
    none = keypoint_masks(people, np.zeros((2, 17), bool), size, codec)
    assert all((v == 1).all() for v in none.values())
    empty = keypoint_masks(np.zeros((0, 17, 3)), np.zeros((0, 17), bool), size, codec)
    assert (empty["heatmap_mask"] == 1).all()


def test_loss_applies_channel_masks_and_is_unchanged_without_them():
    gen = torch.Generator().manual_seed(0)
    outputs = {"heatmaps": torch.rand(2, 19, 6, 8, generator=gen), "pafs": torch.rand(2, 38, 6, 8)}
    targets = {
        "heatmaps": torch.rand(2, 19, 6, 8, generator=gen),
        "pafs": torch.rand(2, 38, 6, 8, generator=gen),
        "mask": (torch.rand(2, 1, 6, 8, generator=gen) > 0.2).float(),
    }
    plain = pose2d_losses(outputs, targets)
    expected = ((outputs["heatmaps"] - targets["heatmaps"]) ** 2 * targets["mask"]).sum() / 4
    assert plain["heatmap_loss"] == pytest.approx(float(expected), rel=1e-6)
    ones = {"heatmap_mask": torch.ones(2, 19, 6, 8), "paf_mask": torch.ones(2, 38, 6, 8)}
    same = pose2d_losses(outputs, {**targets, **ones})
    assert same["loss"] == pytest.approx(float(plain["loss"]), rel=1e-6)
    heat_mask = torch.ones(2, 19, 6, 8)
    heat_mask[:, NOSE] = 0
    masked = pose2d_losses(outputs, {**targets, "heatmap_mask": heat_mask})
    nose = (outputs["heatmaps"] - targets["heatmaps"])[:, NOSE] ** 2 * targets["mask"][:, 0]
    assert masked["heatmap_loss"] == pytest.approx(float(expected - nose.sum() / 4), rel=1e-5)
    assert masked["paf_loss"] == pytest.approx(float(plain["paf_loss"]), rel=1e-6)


def test_muco_people_get_face_masks_and_3d_targets_at_their_keypoints():
    codec2d, codec3d = Pose2DCodec(), Pose3DCodec()
    dataset = Multi3DDataset(
        FIXTURE / "annotations.json",
        FIXTURE / "images",
        (128, 96),
        encoder=codec2d.encode,
        coco_from_joints=COCO17_FROM_JOINTS21,
        normalize=False,
    )
    sample = dataset[0]
    assert not sample["coco_labelled"].any()  # MuCo format: keypoints made from the joints
    batch = collate_stage1([dataset[0], dataset[1]], codec2d, codec3d)
    assert batch["locmaps"].shape == (2, 63, 12, 16)
    assert batch["locmap_weights"][0].max() > 0.5
    heat = batch["heatmap_mask"][0]
    assert heat[NOSE].min() == 0 and heat[NOSE].max() == 1  # 0 on the people, 1 elsewhere
    assert (heat[SHOULDER] == 1).all()
    # the same people with COCO keypoints of their own: nothing is masked
    sample["coco_labelled"][:] = True
    add_3d_targets(sample, codec2d, codec3d)
    assert (sample["heatmap_mask"] == 1).all() and (sample["paf_mask"] == 1).all()


def test_readout_points_use_the_2d_keypoints_where_labelled():
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[0, COCO17_NAMES.index("nose")] = (50, 10, 2)
    points2d = np.zeros((1, 21, 3), np.float32)
    points2d[0, :, :2] = np.arange(42).reshape(21, 2)
    points2d[0, :, 2] = 1
    readout = readout_points(keypoints, points2d)
    np.testing.assert_allclose(readout[0, 16], (50, 10, 2))  # the head is read at the nose
    np.testing.assert_allclose(readout[0, 4], points2d[0, 4])  # no wrist keypoint: projection


class PerfectModel(nn.Module):
    """Returns, batch after batch, the encoded ground truth of the val set (a perfect network)."""

    def __init__(self, maps: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.maps, self.calls = maps, 0

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.maps[self.calls]
        self.calls += 1
        return out


def test_evaluation_of_perfect_outputs_scores_near_perfect(tmp_path):
    generate(tmp_path, 4, seed=5, size=(192, 160), max_people=3)
    codec2d, codec3d = Pose2DCodec(), Pose3DCodec()
    val = synthetic_people_3d(tmp_path, input_size=(192, 160), normalize=False)
    loader = torch.utils.data.DataLoader(val, 2, collate_fn=collate_pose3d)
    maps = []
    for batch in loader:
        per_image = []
        for n in range(len(batch["image_id"])):
            keypoints = batch["keypoints"][n].numpy()
            encoded = codec2d.encode(keypoints, (192, 160))
            readout = readout_points(keypoints, batch["points2d"][n].numpy())
            encoded.update(codec3d.encode(batch["joints3d"][n].numpy(), readout, (192, 160)))
            per_image.append({k: torch.from_numpy(v) for k, v in encoded.items()})
        maps.append({k: torch.stack([m[k] for m in per_image]) for k in per_image[0]})

    def prepare(batch: dict) -> dict:
        return {**batch, "images": batch["image"].float()}

    metrics = evaluate_people3d(
        PerfectModel(maps),
        loader,
        prepare,
        (codec2d, codec3d),
        DistInfo(),
        None,
        coco=coco_or_none(tmp_path / "annotations.json"),
    )
    assert metrics["people_gt"] >= 4
    assert metrics["people_matched"] >= 0.75 * metrics["people_gt"]
    assert metrics["pck"] > 95 and metrics["mpjpe"] < 5, metrics
    assert metrics["pa_mpjpe"] <= metrics["mpjpe"] + 1e-6
    assert metrics["pck_all"] <= metrics["pck"]
    assert metrics["AP"] > 0.7, metrics
    # read at the ground-truth joints: every labelled person counts, all exact
    assert metrics["gt2d_people_matched"] == metrics["people_gt"]
    assert metrics["gt2d_pck"] == 100 and metrics["gt2d_mpjpe"] < 5
