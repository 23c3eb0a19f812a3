"""tools/eval.py on 2D pose checkpoints: a tiny trained run re-evaluated through the CLI, an
oracle model scored through the whole letterbox -> decode -> original-pixels path, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import pose_data_section
from torch import nn

from selecsls.datasets.augment import EvalResize
from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.synthetic_people import generate
from selecsls.heads import build_classifier, build_model, flip_test
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.weights import save_model
from selecsls.tools._cli import run_cli
from selecsls.tools.eval import main as eval_main
from selecsls.tools.evaluation import pose2d as eval_pose2d
from selecsls.tools.train import main as train_main

FAST = ["run.progress=false", "data.workers=0", "run.threads=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_pose_set) -> Path:
    """A 1-epoch pose2d run on 8 synthetic 128x128 images, with EMA; returns its folder (the
    data are in root/train and root/val)."""
    root = tmp_path_factory.mktemp("pose2d_eval")
    for split in ("train", "val"):
        shutil.copytree(tiny_pose_set / split, root / split)
    config = {
        "task": "pose2d",
        "model": {"backbone": "selecsls42b"},
        "data": pose_data_section(root),
        "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.0},
        "schedule": {"epochs": 1, "warmup_epochs": 0.0},
        "ema": {"enabled": True},
        "eval": {"previews": 0},
        "run": {"out_dir": str(root / "run"), "amp": "bf16"},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert run_cli(train_main, [str(root / "config.yaml"), *FAST]) == 0
    return root


def evaluate(argv: list[str]) -> int:
    return run_cli(eval_main, [*argv, "--workers", "0", "--threads", "2"])


def val_args(root: Path) -> list[str]:
    return [
        "--ann",
        str(root / "val" / "annotations.json"),
        "--images",
        str(root / "val" / "images"),
    ]


def test_cli_reproduces_the_runs_own_evaluation(run, tmp_path, capsys):
    checkpoint = torch.load(run / "run" / "best.pt", weights_only=True)
    results, metrics = tmp_path / "out" / "detections.json", tmp_path / "metrics.json"
    # bf16 and channels_last, as the run evaluated (without AMX, bf16 results depend on layout)
    argv = [str(run / "run" / "best.pt"), *val_args(run), "--ema", "--amp", "bf16"]
    argv += ["--channels-last", "--batch-size", "4"]  # the run's eval batch: the same kernels
    assert evaluate([*argv, "--results", str(results), "--json", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert "(EMA)" in out and "4 images at 128x128" in out
    # the engine evaluated the EMA last, into the run's val_results.json: the same detections.
    # What a 1-epoch network decodes differs between CPUs (none at all on some), so the test
    # compares the two evaluations of the same weights rather than what they find; the
    # pycocotools table itself is checked on known detections by the oracle test.
    expected = json.loads((run / "run" / "val_results.json").read_text())
    assert json.loads(results.read_text()) == expected
    assert_scored_as_printed(out, expected)
    assert not list(results.parent.glob(".eval_pose2d*"))  # the scratch folder is gone
    payload = json.loads(metrics.read_text())
    assert payload["input_size"] == [128, 128]  # the run's data.input_size
    assert payload["AP"] == pytest.approx(checkpoint["metrics"]["ema_AP"])
    assert payload["AR"] == pytest.approx(checkpoint["metrics"]["ema_AR"])
    assert payload["images"] == 4 and payload["results"] == str(results)


def assert_scored_as_printed(out: str, detections: list[dict]) -> None:
    """The pycocotools table when there are detections, else the one-line notice instead."""
    table = [line for line in out.splitlines() if line.startswith(" Average")]
    if detections:
        assert len(table) == 10 and "maxDets= 20" in table[0]
    else:
        assert not table and "no detections" in out


def test_ema_and_plain_weights_and_input_size_override(run, tmp_path, monkeypatch, capsys):
    checkpoint = torch.load(run / "run" / "best.pt", weights_only=True)
    seen = []
    original = eval_pose2d.evaluate_pose2d

    def spy(task, model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return original(task, model, *args, **kwargs)

    monkeypatch.setattr(eval_pose2d, "evaluate_pose2d", spy)
    metrics = tmp_path / "m.json"
    base = [str(run / "run" / "best.pt"), *val_args(run), "--input-size", "96x96"]
    assert evaluate([*base, "--ema"]) == 0
    assert evaluate([*base, "--json", str(metrics)]) == 0
    assert "at 96x96" in capsys.readouterr().out
    assert json.loads(metrics.read_text())["input_size"] == [96, 96]
    ema, plain = seen
    differ = [k for k in ema if not torch.equal(ema[k], plain[k])]
    assert differ  # the EMA is a different set of weights
    for key in differ:
        assert torch.equal(ema[key], checkpoint["ema_state_dict"][key])
        assert torch.equal(plain[key], checkpoint["state_dict"][key])


class OracleModel(nn.Module):
    """Returns the encoded ground truth of the next images in dataset order (workers=0)."""

    def __init__(self, targets: list[dict[str, np.ndarray]]) -> None:
        super().__init__()
        self.config = {"backbone": "oracle", "heads": {"xnect2d": {}}}
        self.targets = targets
        self.position = 0
        self.anchor = nn.Parameter(torch.zeros(()))  # so .to(device) has something to move

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.targets[self.position : self.position + len(images)]
        self.position += len(images)
        return {k: torch.from_numpy(np.stack([t[k] for t in batch])) for k in ("heatmaps", "pafs")}


def test_oracle_maps_score_high_in_original_pixels(tmp_path, monkeypatch, capsys):
    # images of another size and aspect than the 128x128 letterbox: the decoded keypoints are
    # only right if they are mapped back through the letterbox transform to original pixels
    generate(tmp_path / "val", 6, seed=5, size=(200, 150), max_people=3)
    ann, images = tmp_path / "val" / "annotations.json", tmp_path / "val" / "images"
    codec, size = Pose2DCodec(), (128, 128)
    dataset = CocoKeypoints(ann, images, size, augment=EvalResize(size))
    targets = [codec.encode(s["keypoints"].numpy(), size) for s in dataset]
    monkeypatch.setattr(eval_pose2d, "load_weights", lambda args, ckpt: OracleModel(targets))
    checkpoint = tmp_path / "pose.pt"
    save_model(build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}}), checkpoint)
    metrics = tmp_path / "m.json"
    argv = [str(checkpoint), "--ann", str(ann), "--images", str(images), "--json", str(metrics)]
    results = tmp_path / "detections.json"
    argv += ["--input-size", "128x128", "--batch-size", "4", "--results", str(results)]
    assert evaluate(argv) == 0
    assert json.loads(metrics.read_text())["AP"] >= 0.9
    detections = json.loads(results.read_text())
    assert len(detections) >= 6  # every image has at least one person
    assert_scored_as_printed(capsys.readouterr().out, detections)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    save_model(build_classifier("selecsls42b", 10), path)
    return path


def test_classifier_refuses_pose_options(run, classifier, capsys):
    assert evaluate([str(classifier), *val_args(run)]) == 2
    error = capsys.readouterr().err
    assert "classification checkpoint" in error and "--ann" in error and "--data" in error


def test_pose_checkpoint_refuses_an_imagenet_folder(run, tmp_path, capsys):
    checkpoint = str(run / "run" / "best.pt")
    assert evaluate([checkpoint, "--data", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "pose2d checkpoint" in error and "--data" in error and "--ann" in error
    assert evaluate([checkpoint]) == 2
    assert "--ann KEYPOINTS.json --images FOLDER" in capsys.readouterr().err


def test_missing_json_and_images(run, tmp_path, capsys):
    checkpoint = str(run / "run" / "best.pt")
    images = str(run / "val" / "images")
    assert evaluate([checkpoint, "--ann", str(tmp_path / "no.json"), "--images", images]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    ann = str(run / "val" / "annotations.json")
    assert evaluate([checkpoint, "--ann", ann, "--images", str(tmp_path)]) == 2
    assert "4 of 4 images" in capsys.readouterr().err
    assert evaluate([checkpoint, "--ann", ann, "--images", str(tmp_path / "nowhere")]) == 2
    assert "image folder not found" in capsys.readouterr().err


def test_json_without_keypoint_annotations(run, tmp_path, capsys):
    checkpoint = str(run / "run" / "best.pt")
    data = json.loads((run / "val" / "annotations.json").read_text())
    images = str(run / "val" / "images")
    no_category = tmp_path / "instances.json"
    no_category.write_text(
        json.dumps({**data, "categories": [{"id": 1, "name": "person", "supercategory": "person"}]})
    )
    assert evaluate([checkpoint, "--ann", str(no_category), "--images", images]) == 2
    assert "keypoints" in capsys.readouterr().err
    unlabelled = tmp_path / "unlabelled.json"
    people = [{**a, "num_keypoints": 0, "keypoints": [0] * 51} for a in data["annotations"]]
    unlabelled.write_text(json.dumps({**data, "annotations": people}))
    assert evaluate([checkpoint, "--ann", str(unlabelled), "--images", images]) == 2
    assert "no annotation has keypoints" in capsys.readouterr().err


def test_ema_requested_from_a_file_without_it(run, tmp_path, capsys):
    checkpoint = tmp_path / "plain.pt"
    save_model(build_model({"backbone": "selecsls42b", "heads": {"xnect2d": {}}}), checkpoint)
    assert evaluate([str(checkpoint), *val_args(run), "--ema"]) == 2
    assert "no EMA weights" in capsys.readouterr().err


def test_int8_evaluation_quantizes_the_network(run, tmp_path, monkeypatch, capsys):
    seen = []
    original = eval_pose2d.evaluate_pose2d

    def spy(task, model, loader, info, amp, channels_last, *args):
        seen.append((model, amp, channels_last))
        return original(task, model, loader, info, amp, channels_last, *args)

    monkeypatch.setattr(eval_pose2d, "evaluate_pose2d", spy)
    metrics, calibration = tmp_path / "m.json", str(run / "train" / "images")
    argv = [str(run / "run" / "best.pt"), *val_args(run), "--amp", "bf16", "--channels-last"]
    assert evaluate([*argv, "--int8-calibration", calibration, "--json", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert f"int8: calibrated on 8 images of {calibration}" in out
    assert "best.pt (int8) on" in out and "4 images at 128x128" in out
    model, amp, channels_last = seen[0]
    assert amp is None and channels_last is False  # the int8 graph runs on its own terms
    assert any("quantized" in type(m).__module__ for m in model.modules())
    assert json.loads(metrics.read_text())["int8_calibration"] == calibration
    assert evaluate([*argv, "--int8-calibration", str(tmp_path / "none")]) == 2
    assert "int8 calibration folder not found" in capsys.readouterr().err


def test_flip_test_evaluation(run, tmp_path, monkeypatch, capsys):
    calls = []
    original = flip_test.predict_with_flip

    def spy(model, images, *args):
        calls.append(images.shape)
        return original(model, images, *args)

    monkeypatch.setattr(flip_test, "predict_with_flip", spy)
    metrics = tmp_path / "m.json"
    argv = [str(run / "run" / "best.pt"), *val_args(run), "--json", str(metrics)]
    assert evaluate([*argv, "--flip", "--batch-size", "2"]) == 0
    assert "best.pt (flip test) on" in capsys.readouterr().out
    assert calls == [(2, 3, 128, 128)] * 2  # every batch of the 4 val images, mirrored too
    written = json.loads(metrics.read_text())
    assert written["flip"] is True and 0 <= written["AP"] <= 1
