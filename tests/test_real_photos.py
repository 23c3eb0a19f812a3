"""Learning on real photos: the 2D network memorises the people of two real COCO val2017 photos
and finds them again (the short version of configs/quickstart/pose2d_real_photos.yaml, whose
full run is in docs/pose2d.md, "Learning on real photos").

It trains in fp32 (run.amp=none): the same arithmetic on every CPU, and an AP floor far below
what the run reaches but above what an untrained network can score (0: it finds nobody)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selecsls.tools._cli import run_cli
from selecsls.tools.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT.parent / "shared" / "data" / "coco_sample"
PHOTOS = {785, 197388}  # 1 and 5 people, the largest in the sample
STEPS = 240


@pytest.mark.skipif(not COCO.is_dir(), reason="shared COCO sample not present")
def test_network_learns_the_people_of_real_photos(tmp_path):
    data = json.loads((COCO / "person_keypoints_sample.json").read_text())
    data["images"] = [i for i in data["images"] if i["id"] in PHOTOS]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in PHOTOS]
    (tmp_path / "photos.json").write_text(json.dumps(data))
    argv = [
        str(ROOT / "configs" / "quickstart" / "pose2d_real_photos.yaml"),
        f"data.root={tmp_path}",
        f"data.train_images={COCO}",
        f"data.val_images={COCO}",
        "data.train_json=photos.json",
        "data.val_json=photos.json",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        f"schedule.epochs={STEPS}",  # one step per epoch
        f"eval.every={STEPS}",
        f"run.out_dir={tmp_path / 'run'}",
        "run.progress=false",
        "run.threads=2",
    ]
    assert run_cli(train_main, argv) == 0
    metrics = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["metrics"]
    assert metrics["people"] > 0 and metrics["AP"] >= 0.01, metrics
