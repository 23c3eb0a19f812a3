"""The pose3d (Stage I) and lifting (Stage II) tasks through tools/train.py, the Stage I + II
checkpoint, its evaluation entry, and config errors that name the key."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import pose_data_section

from selecsls.heads import build_model, load_model, save_model
from selecsls.heads.pose3d.lifting import find_lifting
from selecsls.heads.weights import read_model_file
from selecsls.tools._cli import run_cli
from selecsls.tools.engine.config import read_yaml, resolve
from selecsls.tools.engine.experiment import experiment_schema, load_experiment
from selecsls.tools.engine.tasks import TASKS
from selecsls.tools.engine.tasks.pose3d_data import load_stage1_weights
from selecsls.tools.engine.tasks.pose3d_eval import evaluate_pose3d_checkpoint
from selecsls.tools.train import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["run.progress=false", "data.workers=0", "run.threads=2"]
METRICS3D = ("mpjpe", "pa_mpjpe", "pck", "auc", "pck_all", "auc_all")


def train(argv: list[str]) -> int:
    return run_cli(main, argv)


def read_summary(out_dir: Path) -> list[dict]:
    with (out_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def synthetic(tiny_pose_set) -> Path:
    return tiny_pose_set


def data_section(root: Path) -> dict:
    return {k: v for k, v in pose_data_section(root).items() if k != "batch_size"}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def stage1_config(tmp_path: Path, root: Path) -> Path:
    return write_config(
        tmp_path / "pose3d.yaml",
        {
            "task": "pose3d",
            "model": {"backbone": "selecsls42b"},
            "data": {**data_section(root), "batch_size": 4},
            "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.0},
            "schedule": {"epochs": 3, "warmup_epochs": 0.0},
            "eval": {"every": 3},
            "run": {"out_dir": str(tmp_path / "stage1"), "amp": "bf16", "log_every": 1},
        },
    )


def lifting_config(tmp_path: Path, root: Path, stage1: Path | None) -> Path:
    return write_config(
        tmp_path / "lifting.yaml",
        {
            "task": "lifting",
            "model": {"backbone": "selecsls42b", "stage1": str(stage1) if stage1 else None},
            # the run evaluates as evaluate_pose3d_checkpoint does by default (batch 8, NCHW),
            # so that both take the same kernels on any CPU
            "data": {**data_section(root), "batch_size": 32, "repeats": 16, "eval_batch_size": 8},
            "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.0},
            "schedule": {"epochs": 4, "warmup_epochs": 0.0},
            "eval": {"every": 4},
            "run": {"out_dir": str(tmp_path / "stage2"), "log_every": 1, "channels_last": False},
        },
    )


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, synthetic) -> Path:
    tmp_path = tmp_path_factory.mktemp("stage1")
    assert train([str(stage1_config(tmp_path, synthetic)), *FAST]) == 0
    return tmp_path / "stage1"


def test_stage1_training_runs_and_reports_3d_metrics(stage1_run):
    # Plumbing only: 6 bf16 steps move the losses differently on every CPU (issue #19); that
    # the 3D branch learns is test_pose3d_head.py::test_a_few_steps_fit_the_location_maps.
    rows = read_summary(stage1_run)
    assert len(rows) == 3
    for key in ("train_loss", "train_locmap_loss"):
        assert all(math.isfinite(float(r[key])) and float(r[key]) > 0 for r in rows), key
    checkpoint = torch.load(stage1_run / "best.pt", weights_only=True)
    metrics = checkpoint["metrics"]
    for key in ("pck", "auc", "pck_all", "auc_all", "AP"):
        assert math.isfinite(metrics[key]), (key, metrics)
    assert 0 <= metrics["pck_all"] <= metrics["pck"] <= 100 or metrics["people_matched"] == 0
    assert metrics["people_gt"] > 0
    assert checkpoint["config"]["heads"] == {"xnect3d": {}}
    assert checkpoint["experiment"]["codec"]["sigma3d"] == 7.0


def test_stage2_ground_truth_training_lowers_mpjpe_on_held_out_poses(tmp_path, synthetic):
    config = lifting_config(tmp_path, synthetic, None)
    task, _ = load_experiment(config, FAST)
    assert task.best_metric == "lift_pck"
    torch.manual_seed(0)  # a fixed baseline network, whatever ran before in this process
    model = task.build_model()
    _, val = task.build_datasets()
    loader = torch.utils.data.DataLoader(val, 4, collate_fn=task.collate)
    before = task.evaluate_ground_truth_inputs(find_lifting(model), loader)
    assert train([str(config), *FAST]) == 0
    after = torch.load(tmp_path / "stage2" / "best.pt", weights_only=True)["metrics"]
    assert after["lift_people_gt"] == before["lift_people_gt"] > 0
    assert after["lift_mpjpe"] < 0.8 * before["lift_mpjpe"], (before, after)


def load_stage1_plus_2(path: Path, stage1: Path, head: str):
    """The Stage I + II model at `path`; checks its heads and that Stage I stayed frozen (its
    weights are the Stage I checkpoint's, bit for bit)."""
    model = load_model(path)
    assert set(model.heads) == {head, "lifting"} and find_lifting(model) is not None
    first = torch.load(stage1, weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        if not key.startswith("heads.lifting."):
            assert torch.equal(value, first[key]), key
    return model


def test_stage1_plus_2_checkpoint_round_trips_and_evaluates(
    tmp_path, synthetic, stage1_run, capsys
):
    stage1 = stage1_run / "best.pt"
    config = lifting_config(tmp_path, synthetic, stage1)
    assert train([str(config), "schedule.epochs=1", "eval.every=1", *FAST]) == 0
    path = tmp_path / "stage2" / "best.pt"
    model = load_stage1_plus_2(path, stage1, "xnect3d")
    saved = torch.load(path, weights_only=True)
    for key, value in saved["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
    for key in METRICS3D:
        assert key in saved["metrics"] and "readout_" + key in saved["metrics"]
    assert "lift_mpjpe" in saved["metrics"]
    # the evaluation entry for tools/eval.py: the checkpoint alone -> the same metrics
    metrics = evaluate_pose3d_checkpoint(
        path, synthetic / "val" / "annotations.json", synthetic / "val" / "images"
    )
    assert metrics["pck"] == pytest.approx(saved["metrics"]["pck"], abs=1e-6)
    assert metrics["people_gt"] == saved["metrics"]["people_gt"]
    readout = evaluate_pose3d_checkpoint(
        path, synthetic / "val" / "annotations.json", synthetic / "val" / "images",
        readout_only=True,
    )  # fmt: skip
    assert "readout_pck" not in readout and readout["pck"] == pytest.approx(
        saved["metrics"]["readout_pck"], abs=1e-6
    )
    # int8 Stage I (CPU), Stage II still applied
    calibration = synthetic / "train" / "images"
    quantized = evaluate_pose3d_checkpoint(
        path, synthetic / "val" / "annotations.json", synthetic / "val" / "images",
        int8_calibration=calibration,
    )  # fmt: skip
    assert "int8: calibrated on" in capsys.readouterr().out
    assert "readout_pck" in quantized and quantized["people_gt"] == metrics["people_gt"]
    assert math.isfinite(quantized["pck_all"])
    # flip test: the same people scored, from maps averaged with the mirror image's
    flipped = evaluate_pose3d_checkpoint(
        path, synthetic / "val" / "annotations.json", synthetic / "val" / "images", flip=True
    )
    assert flipped["people_gt"] == metrics["people_gt"] and math.isfinite(flipped["pck_all"])
    assert flipped["gt2d_mpjpe"] != pytest.approx(metrics["gt2d_mpjpe"], abs=1e-6)


def test_lifting_task_reads_its_stage1_file_once(tmp_path, synthetic, stage1_run, monkeypatch):
    """The task's codec (from the Stage I's head) and the model's weights come from one read."""
    from selecsls.tools.engine.tasks import lifting, pose3d_data

    reads = []

    def counting(source):
        reads.append(str(source))
        return read_model_file(source)

    monkeypatch.setattr(lifting, "read_model_file", counting)
    monkeypatch.setattr(pose3d_data, "read_model_file", counting)
    stage1 = stage1_run / "best.pt"
    task, _ = load_experiment(lifting_config(tmp_path, synthetic, stage1), FAST)
    model = task.build_model()
    assert reads == [str(stage1)]
    first = torch.load(stage1, weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():  # and the weights are Stage I's
        if not key.startswith("heads.lifting."):
            assert torch.equal(value, first[key]), key


def test_stage2_on_stage1_outputs_runs(tmp_path, synthetic, stage1_run):
    config = lifting_config(tmp_path, synthetic, stage1_run / "best.pt")
    overrides = ["data.inputs=stage1", "data.batch_size=4", "schedule.epochs=1", *FAST]
    assert train([str(config), *overrides]) == 0
    row = read_summary(tmp_path / "stage2")[0]
    assert float(row["train_loss"]) >= 0 and "val_readout_pck" in row


@pytest.mark.parametrize("head2d, head3d", [("xnect2d", "xnect3d"), ("centre2d", "centre3d")])
def test_pose2d_checkpoint_initialises_stage1(tmp_path, head2d, head3d):
    from selecsls.backbones.checkpoint import CheckpointError

    torch.manual_seed(0)
    pose2d = build_model({"backbone": "selecsls42b", "heads": {head2d: {}}})
    save_model(pose2d, tmp_path / "pose2d.pt")
    model = build_model({"backbone": "selecsls42b", "heads": {head3d: {}}})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kind = load_stage1_weights(model, str(tmp_path / "pose2d.pt"))
    assert kind.startswith("2D")
    source = pose2d.state_dict()
    for key, value in model.state_dict().items():
        if ".trunk3d." in key or ".predictor3d." in key:
            assert torch.equal(value, before[key]), key  # the 3D branch keeps its init
        else:
            assert torch.equal(value, source[key.replace(head3d, head2d)]), key

    other = build_model({"backbone": "selecsls60", "heads": {head3d: {}}})
    with pytest.raises(CheckpointError, match="model.weights"):
        load_stage1_weights(other, str(tmp_path / "pose2d.pt"))
    wrong = {"xnect3d": "centre3d", "centre3d": "xnect3d"}[head3d]  # the other 2D head's Stage I
    mismatched = build_model({"backbone": "selecsls42b", "heads": {wrong: {}}})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_stage1_weights(mismatched, str(tmp_path / "pose2d.pt"))


def test_config_errors_name_the_key(tmp_path, synthetic, capsys):
    stage1 = stage1_config(tmp_path, synthetic)
    cases = [
        (stage1, ["data.coco_json=x.json"], "data.coco_json"),
        (stage1, ["data.coco_json=x.json", "data.coco_images=."], "data.coco_json"),
        (stage1, ["eval.best=mpjpe"], "eval.best"),
        (stage1, ["loss.locmap_weight=-1"], "loss.locmap_weight"),
        (stage1, ["data.train_repeat=0"], "data.train_repeat"),
        (stage1, ["model.weights=nowhere.pt"], "model.weights"),
        (stage1, ["loss.aux_weight=1"], "loss.aux_weight"),
    ]
    lifting = lifting_config(tmp_path, synthetic, None)
    cases += [
        (lifting, ["model.stage1=nowhere.pt"], "model.stage1"),
        (lifting, ["data.inputs=stage1"], "model.stage1"),
        (lifting, ["data.inputs=images"], "data.inputs"),
        (lifting, ["data.val_images=nowhere"], "data.val_images"),
        (lifting, ["loss.locmap_weight=1"], "loss.locmap_weight"),
        (lifting, ["eval.best=pck_all"], "eval.best"),
    ]
    for config, overrides, key in cases:
        assert train([str(config), *overrides, *FAST]) == 2, overrides
        assert key in capsys.readouterr().err, overrides
    assert not (tmp_path / "stage1" / "last.pt").exists()


def test_quickstart_and_muco_recipes_parse():
    quick, config = load_experiment(REPO / "configs" / "quickstart" / "pose3d_synthetic.yaml")
    assert quick.name == "pose3d" and quick.best_metric == "pck_all"
    assert config["run"]["threads"] == 1
    stage2 = REPO / "configs" / "quickstart" / "lifting_synthetic.yaml"
    raw = yaml.safe_load(stage2.read_text())
    assert raw["model"]["stage1"] == config["run"]["out_dir"] + "/best.pt"
    same = ("root", "synthetic_train_images", "synthetic_size", "synthetic_seed", "input_size")
    for key in same:  # Stage II must see the very same synthetic set as Stage I
        assert (
            raw["data"][key]
            == yaml.safe_load(
                (REPO / "configs" / "quickstart" / "pose3d_synthetic.yaml").read_text()
            )["data"][key]
        ), key
    # the real-data recipe: every key known to the schema (its data is not here to check)
    path = REPO / "configs" / "muco" / "xnect_selecsls60.yaml"
    muco = resolve(read_yaml(path), experiment_schema(TASKS["pose3d"]), str(path))
    assert muco["data"]["coco_json"] and muco["model"]["backbone"] == "selecsls60"
    assert np.isfinite(muco["loss"]["locmap_weight"])


def test_eval_tool_entry_for_3d_checkpoints(tmp_path, synthetic, stage1_run, capsys):
    """tools/eval_pose3d.EVALUATOR as tools/eval.py wires it: beside the pose2d evaluator (shared
    2D options added once), on a Stage I checkpoint, printing and writing the metrics."""
    import argparse
    import json

    from selecsls.tools.evaluation import pose2d as eval_pose2d
    from selecsls.tools.evaluation import pose3d as eval_pose3d

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    for flag in ("--ema", "--channels-last"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--amp", default="none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    for evaluator in (eval_pose2d.EVALUATOR, eval_pose3d.EVALUATOR):
        evaluator.add_arguments(parser.add_argument_group())
    checkpoint = stage1_run / "best.pt"
    val = synthetic / "val"
    args = parser.parse_args([
        str(checkpoint), "--ann", str(val / "annotations.json"), "--images", str(val / "images"),
        "--json", str(tmp_path / "metrics.json"), "--max-images", "3",
    ])  # fmt: skip
    obj = torch.load(checkpoint, weights_only=True)
    assert eval_pose3d.EVALUATOR.run(args, obj) == 0
    assert "3DPCK" in capsys.readouterr().out
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["images"] == 3 and "pck_all" in written and "AP" in written
    with pytest.raises(ValueError, match="--ann"):
        eval_pose3d.EVALUATOR.run(parser.parse_args([str(checkpoint)]), obj)


COCO_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"


@pytest.mark.skipif(not COCO_SAMPLE.is_dir(), reason="shared COCO sample not present")
def test_2d_only_coco_people_mix_into_stage1_training(tmp_path, synthetic):
    """data.coco_json mixes the real COCO sample (2D only) into the 3D set: the task's dataset
    holds both, a COCO batch has no 3D weight, and a run over the mixture trains."""
    config = stage1_config(tmp_path, synthetic)
    overrides = [
        f"data.coco_json={COCO_SAMPLE / 'person_keypoints_sample.json'}",
        f"data.coco_images={COCO_SAMPLE}",
        "data.coco_repeat=2",
        "schedule.epochs=1",
        *FAST,
    ]
    task, _ = load_experiment(config, overrides)
    train_set, _ = task.build_datasets()
    assert len(train_set) == 8 + 2 * 4
    coco_batch = task.collate([train_set[8], train_set[9]])
    assert coco_batch["locmap_weights"].sum() == 0 and coco_batch["heatmaps"].shape[0] == 2
    assert (coco_batch["heatmap_mask"] == 1).all()  # COCO people: every type labellable
    assert train([str(config), *overrides, "run.max_steps_per_epoch=2"]) == 0
    assert float(read_summary(tmp_path / "stage1")[0]["train_loss"]) > 0


def test_stage2_on_a_centre3d_stage1(tmp_path, synthetic):
    # Stage I with the centre + offset 2D head: Stage II trains on it, both input kinds, and the
    # checkpoint is a complete centre3d + lifting model whose Stage I stayed frozen
    torch.manual_seed(0)
    stage1 = save_model(
        build_model({"backbone": "selecsls42b", "heads": {"centre3d": {}}}), tmp_path / "c3d.pt"
    )
    config = lifting_config(tmp_path, synthetic, stage1)
    task, _ = load_experiment(config, FAST)
    assert task.head == "centre2d" and type(task.codec).__name__ == "CentreCodec"
    for inputs in ("ground_truth", "stage1"):
        overrides = [f"data.inputs={inputs}", "data.batch_size=4", "schedule.epochs=1"]
        assert train([str(config), *overrides, "eval.every=1", *FAST]) == 0, inputs
    path = tmp_path / "stage2" / "best.pt"
    load_stage1_plus_2(path, stage1, "centre3d")
    metrics = torch.load(path, weights_only=True)["metrics"]
    assert "lift_mpjpe" in metrics and "readout_pck" in metrics


def test_stage2_refuses_a_2d_only_stage1(tmp_path, synthetic):
    stage1 = save_model(
        build_model({"backbone": "selecsls42b", "heads": {"centre2d": {}}}), tmp_path / "c2d.pt"
    )
    task, _ = load_experiment(lifting_config(tmp_path, synthetic, stage1), FAST)
    with pytest.raises(ValueError, match="not a Stage I checkpoint .heads: centre2d"):
        task.build_model()
