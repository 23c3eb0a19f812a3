"""Training across skeletons: data of another skeleton is refused with one clear error, and a
mixed-in set is mapped onto the model's skeleton with the types it lacks masked in the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selecsls.datasets.coco import DatasetError
from selecsls.heads.skeletons import COCO17_NAMES, OPENPOSE18_NAMES
from selecsls.tools._cli import run_cli
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.train import main as train_main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO = DATA / "coco_sample"
CROWDPOSE = DATA / "pose_samples" / "crowdpose"
pytestmark = pytest.mark.skipif(
    not (COCO.is_dir() and CROWDPOSE.is_dir()), reason="shared samples not present"
)
FAST = ["run.progress=false", "data.workers=0", "run.threads=2"]


def write_config(tmp_path: Path, data: dict, codec: dict | None = None) -> Path:
    config = {
        "task": "pose2d",
        "model": {"backbone": "selecsls42b", "width": 0.25},
        "codec": codec or {},
        "data": {
            "root": str(DATA),
            "train_json": "coco_sample/person_keypoints_sample.json",
            "train_images": "coco_sample",
            "val_json": "coco_sample/person_keypoints_sample.json",
            "val_images": "coco_sample",
            "input_size": "128x96",
            "batch_size": 4,
            "eval_batch_size": 4,
            **data,
        },
        "optim": {"name": "adamw", "lr": 1e-3},
        "schedule": {"epochs": 1, "warmup_epochs": 0.0},
        "eval": {"previews": 0},
        "run": {"out_dir": str(tmp_path / "run"), "amp": "none"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


CROWD_MIX = {
    "format": "crowdpose",
    "json": "pose_samples/crowdpose/test_crowdpose.json",
    "images": "pose_samples/crowdpose",
}


def test_data_of_another_skeleton_is_refused_clearly(tmp_path):
    crowd_val = {
        "val_json": CROWD_MIX["json"],
        "val_images": CROWD_MIX["images"],
    }
    task, _ = load_experiment(write_config(tmp_path, crowd_val), FAST)
    with pytest.raises(DatasetError) as error:  # a 14-keypoint json read as COCO-17
        task.build_datasets()
    message = str(error.value)
    assert "test_crowdpose.json" in message and "14" in message and "coco17" in message
    with pytest.raises(ValueError, match="annotates crowdpose14, but codec.skeleton=coco17"):
        load_experiment(write_config(tmp_path, {"format": "crowdpose"}), FAST)[0].check()
    bad = {"mix": [{"format": "crowdpose", "json": "x.json"}]}
    with pytest.raises(ValueError, match=r"data.mix\[0\]: needs format, json and images"):
        load_experiment(write_config(tmp_path, bad), FAST)[0].check()


def test_mixed_set_is_mapped_and_its_missing_types_are_masked(tmp_path):
    task, _ = load_experiment(write_config(tmp_path, {"mix": [CROWD_MIX]}), FAST)
    task.check()
    train, _ = task.build_datasets()
    coco_part, crowd_part = train.datasets
    face = [OPENPOSE18_NAMES.index(n) for n in COCO17_NAMES[:5]]  # CrowdPose has no face points
    body = OPENPOSE18_NAMES.index("left_knee")
    background = len(OPENPOSE18_NAMES)
    for index in range(len(crowd_part)):
        sample = crowd_part[index]
        assert sample["keypoints"].shape[1:] == (17, 3)
        assert (sample["keypoints"][:, :5] == 0).all()  # unlabelled, not located anywhere
        heat = sample["heatmap_mask"]
        if len(sample["keypoints"]) and (sample["keypoints"][..., 2] > 0).any():
            assert (heat[face] == 0).any() and (heat[background] == 0).any()
        assert (heat[body] == 1).all()  # the types CrowdPose labels keep full supervision
        assert heat[face].mean() > 0  # masked only around the people, not the whole image
    for index in range(len(coco_part)):  # the fully labelled set: masks of ones, to stack
        sample = coco_part[index]
        assert (sample["heatmap_mask"] == 1).all() and (sample["paf_mask"] == 1).all()
    batch = task.collate([coco_part[0], crowd_part[0]])
    assert batch["heatmap_mask"].shape[:2] == (2, 19)


def test_a_mixed_run_trains_and_evaluates(tmp_path):
    config = write_config(tmp_path, {"mix": [{**CROWD_MIX, "repeat": 2}]})
    assert run_cli(train_main, [str(config), *FAST]) == 0
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert np.isfinite(checkpoint["metrics"]["AP"])
    assert checkpoint["experiment"]["data"]["mix"][0]["format"] == "crowdpose"
