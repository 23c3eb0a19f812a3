"""The pose2d task through tools/train.py: synthetic training, the COCO recipe on the real
sample, and bad input failing before training."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import pose_data_section
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from selecsls.datasets.synthetic_people import LABEL_RULES
from selecsls.tools._cli import run_cli
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.train import main

REPO = Path(__file__).resolve().parents[1]
COCO_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"
SAMPLE_JSON = "person_keypoints_sample.json"
FAST = ["run.progress=false", "data.workers=0", "run.threads=2"]


def train(argv: list[str]) -> int:
    return run_cli(main, argv)


def read_summary(out_dir: Path) -> list[dict]:
    with (out_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def synthetic(tiny_pose_set) -> Path:
    return tiny_pose_set


def synthetic_config(tmp_path: Path, root: Path) -> Path:
    config = {
        "task": "pose2d",
        "model": {"backbone": "selecsls42b"},
        "data": pose_data_section(root),
        "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.0},
        "schedule": {"epochs": 3, "warmup_epochs": 0.0},
        "eval": {"every": 3, "previews": 2},
        "run": {"out_dir": str(tmp_path / "run"), "amp": "bf16", "log_every": 1},
    }
    path = tmp_path / "pose2d.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_synthetic_training_lowers_loss_and_evaluates(tmp_path, synthetic):
    config = synthetic_config(tmp_path, synthetic)
    assert train([str(config), "model.width=0.5", *FAST]) == 0  # the quickstarts' width
    out_dir = tmp_path / "run"
    rows = read_summary(out_dir)
    assert len(rows) == 3
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], losses
    # a valid pycocotools evaluation: every OKS figure present, in [0, 1] (or -1: no such area).
    # Read from the checkpoint: summary.csv keeps the columns of its first row (no eval in epoch 1).
    checkpoint = torch.load(out_dir / "best.pt", weights_only=True)
    for key in ("AP", "AP50", "AR"):
        assert -1.0 <= checkpoint["metrics"][key] <= 1.0
    results = json.loads((out_dir / "val_results.json").read_text())
    assert isinstance(results, list)
    for result in results:
        assert len(result["keypoints"]) == 51 and result["category_id"] == 1
    # the codec settings land where the demo and the export read them
    assert checkpoint["experiment"]["codec"]["sigma"] == 7.0
    assert checkpoint["config"]["heads"] == {"xnect2d": {}}
    assert checkpoint["config"]["backbone_width"] == 0.5  # eval, demo and export rebuild it
    # the previews are in the engine's own event file, at the step of the val scalars
    (events,) = (out_dir / "tb").glob("events.out.tfevents.*")
    found = EventAccumulator(str(events), size_guidance={"images": 0})
    found.Reload()
    assert [image.step for image in found.Images("val/preview")] == [3]
    assert [scalar.step for scalar in found.Scalars("val/AP")] == [3]


@pytest.mark.skipif(not COCO_SAMPLE.is_dir(), reason="shared COCO sample not present")
def test_coco_recipe_parses_and_runs_one_step_on_the_sample(tmp_path):
    overrides = [
        f"data.root={COCO_SAMPLE}",
        f"data.train_json={SAMPLE_JSON}",
        "data.train_images=.",
        f"data.val_json={SAMPLE_JSON}",
        "data.val_images=.",
        "model.weights=null",  # no download in tests
        "data.batch_size=2",
        "data.eval_batch_size=4",
        "schedule.epochs=1",
        "schedule.warmup_epochs=0",
        "run.max_steps_per_epoch=1",
        f"run.out_dir={tmp_path / 'run'}",
        *FAST,
    ]
    recipe = REPO / "configs" / "coco" / "xnect2d_selecsls60.yaml"
    task, config = load_experiment(recipe, overrides)
    assert task.name == "pose2d" and task.best_metric == "AP"
    assert config["model"]["backbone"] == "selecsls60"
    assert task.input_size == (368, 368) and task.codec.sigma == 7.0
    raw = yaml.safe_load(recipe.read_text())
    assert raw["model"]["weights"] in ("selecsls60.timm", "selecsls60.seed_better")
    assert train([str(recipe), *overrides]) == 0
    rows = read_summary(tmp_path / "run")
    assert float(rows[0]["train_loss"]) > 0 and "val_AP" in rows[0]


def test_missing_images_fail_before_training(tmp_path, synthetic, capsys):
    root = tmp_path / "data"
    shutil.copytree(synthetic, root)
    for image in list((root / "train" / "images").glob("*.jpg"))[:2]:
        image.unlink()
    assert train([str(synthetic_config(tmp_path, root)), *FAST]) == 2
    error = capsys.readouterr().err
    assert "2 of 8 images" in error and "missing" in error
    assert not (tmp_path / "run" / "last.pt").exists()


def test_json_without_keypoints_fails_before_training(tmp_path, synthetic, capsys):
    root = tmp_path / "data"
    shutil.copytree(synthetic, root)
    path = root / "val" / "annotations.json"
    data = json.loads(path.read_text())
    for category in data["categories"]:
        category.pop("keypoints")
    path.write_text(json.dumps(data))
    assert train([str(synthetic_config(tmp_path, root)), *FAST]) == 2
    assert "keypoints" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_missing_folder_and_bad_size_are_config_errors(tmp_path, synthetic, capsys):
    config = synthetic_config(tmp_path, synthetic)
    assert train([str(config), "data.val_images=nowhere", *FAST]) == 2
    assert "data.val_images" in capsys.readouterr().err
    assert train([str(config), "data.input_size=big", *FAST]) == 2
    assert "data.input_size" in capsys.readouterr().err
    assert train([str(config), "loss.heatmap_fg_weight=-1", *FAST]) == 2
    assert "loss.heatmap_fg_weight must be >= 0, got -1" in capsys.readouterr().err
    assert train([str(config), "loss.paf_fg_weight=-2", *FAST]) == 2
    assert "loss.paf_fg_weight must be >= 0, got -2" in capsys.readouterr().err
    assert train([str(config), "model.width=0", *FAST]) == 2
    assert "model.width must be in (0, 4], got 0" in capsys.readouterr().err
    assert train([str(config), "model.width=0.5", "model.weights=selecsls42b.timm", *FAST]) == 2
    assert "published weights are for model.width 1, not 0.5" in capsys.readouterr().err


def test_imagenet_weights_initialise_the_backbone_only(tmp_path):
    from selecsls.backbones.checkpoint import CheckpointError
    from selecsls.heads import build_classifier, build_model
    from selecsls.heads.weights import save_model
    from selecsls.tools.engine.tasks.pose2d_eval import load_pose_backbone

    classifier = build_classifier("selecsls42b", 10)
    save_model(classifier, tmp_path / "imagenet.pt")
    model = build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}})
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("heads.")}
    load_pose_backbone(model, str(tmp_path / "imagenet.pt"))
    expected = classifier.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            assert torch.equal(value, expected[key]), key
        else:
            assert torch.equal(value, head_before[key]), key
    other = build_model({"backbone": "selecsls60", "heads": {"xnect2d": {}}})
    with pytest.raises(CheckpointError, match="backbone part"):
        load_pose_backbone(other, str(tmp_path / "imagenet.pt"))


def test_synthetic_set_is_rewritten_when_its_settings_change(tmp_path):
    path = tmp_path / "prepare.yaml"
    path.write_text("task: pose2d\ndata: {prepare: synthetic}\n")
    train_json = tmp_path / "data" / "train" / "annotations.json"

    def prepare(*overrides: str) -> dict:
        task, _ = load_experiment(path, [
            f"data.root={tmp_path / 'data'}", "data.synthetic_train_images=2",
            "data.synthetic_val_images=1", "data.synthetic_size=64x64",
            "data.train_json=train/annotations.json", "data.val_json=val/annotations.json",
            *overrides,
        ])  # fmt: skip
        task.prepare_data()
        return json.loads(train_json.read_text())["info"]["generator"]

    first = prepare()
    stamp = train_json.stat().st_mtime_ns
    assert prepare() == first
    assert train_json.stat().st_mtime_ns == stamp  # same settings: kept, not rewritten
    changed = prepare("data.synthetic_depth=[2.0,3.0]")
    assert changed["depth_range"] == [2.0, 3.0] != first["depth_range"]
    assert train_json.stat().st_mtime_ns != stamp
    # a set written under older labelling rules (no label_rules recorded) is rewritten too
    data = json.loads(train_json.read_text())
    del data["info"]["generator"]["label_rules"]
    train_json.write_text(json.dumps(data))
    assert prepare("data.synthetic_depth=[2.0,3.0]")["label_rules"] == LABEL_RULES


def test_synthetic_splits_need_their_own_folders(tmp_path, capsys):
    path = tmp_path / "prepare.yaml"
    path.write_text("task: pose2d\ndata: {prepare: synthetic}\n")
    assert train([str(path), f"run.out_dir={tmp_path / 'run'}"]) == 2
    assert "data.train_json and data.val_json need different folders" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # --print-config still shows the config (no data checks there)
    assert train([str(path), "--print-config"]) == 0
    assert "synthetic_depth" in capsys.readouterr().out
