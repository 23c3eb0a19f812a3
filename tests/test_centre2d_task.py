"""The centre + offset head through the tools: `model.head=centre2d` trains (the checkpoint
records the head), the eval CLI reproduces the run's evaluation, the COCO recipe variant runs a
step, and the demo, ONNX export and int8 take the model with no special case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import pose_data_section, randomize_bn
from test_demo import FRAMES, clip, read_video  # noqa: F401 (clip is a fixture)
from test_pose2d_train import COCO_SAMPLE, REPO, SAMPLE_JSON, read_summary
from test_quantize import SIZE, images, relative_errors

from selecsls.heads import build_model, save_model
from selecsls.tools import demo
from selecsls.tools._cli import run_cli
from selecsls.tools.deploy.quantize import letterboxed, quantize_int8
from selecsls.tools.eval import main as eval_main
from selecsls.tools.train import main as train_main

FAST = ["run.progress=false", "data.workers=0", "run.threads=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_pose_set) -> Path:
    """A 2-epoch centre2d run on the tiny synthetic set; returns its folder."""
    root = tmp_path_factory.mktemp("centre2d_run")
    for split in ("train", "val"):
        shutil.copytree(tiny_pose_set / split, root / split)
    config = {
        "task": "pose2d",
        "model": {"backbone": "selecsls42b", "width": 0.5, "head": "centre2d"},
        "data": pose_data_section(root),
        "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.0},
        "schedule": {"epochs": 2, "warmup_epochs": 0.0},
        "eval": {"every": 2, "previews": 2, "flip": True},
        "run": {"out_dir": str(root / "run"), "amp": "bf16", "log_every": 1},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert run_cli(train_main, [str(root / "config.yaml"), *FAST]) == 0
    return root


def test_training_records_the_head_and_logs_both_losses(run):
    checkpoint = torch.load(run / "run" / "best.pt", weights_only=True)
    assert checkpoint["config"]["heads"] == {"centre2d": {}}
    assert checkpoint["experiment"]["model"]["head"] == "centre2d"
    rows = read_summary(run / "run")
    assert len(rows) == 2
    assert float(rows[0]["train_offset_loss"]) > 0 and float(rows[0]["train_heatmap_loss"]) > 0
    assert 0 <= checkpoint["metrics"]["AP"] <= 1


def test_eval_cli_reproduces_the_runs_evaluation(run, tmp_path, capsys):
    results = tmp_path / "detections.json"
    argv = [str(run / "run" / "last.pt"), "--ann", str(run / "val" / "annotations.json")]
    argv += ["--images", str(run / "val" / "images"), "--amp", "bf16", "--channels-last"]
    argv += ["--batch-size", "8", "--flip", "--results", str(results)]
    assert run_cli(eval_main, [*argv, "--workers", "0", "--threads", "2"]) == 0
    assert "(flip test)" in capsys.readouterr().out
    # the same weights, kernels and decoder as the run's last evaluation: the same detections
    assert json.loads(results.read_text()) == json.loads(
        (run / "run" / "val_results.json").read_text()
    )


def test_coco_recipe_variant_runs_one_step_on_the_sample(tmp_path):
    recipe = REPO / "configs" / "coco" / "centre2d_selecsls60.yaml"
    overrides = [
        f"data.root={COCO_SAMPLE}",
        f"data.train_json={SAMPLE_JSON}",
        "data.train_images=.",
        f"data.val_json={SAMPLE_JSON}",
        "data.val_images=.",
        "model.weights=null",
        "data.batch_size=2",
        "data.eval_batch_size=4",
        "schedule.epochs=1",
        "schedule.warmup_epochs=0",
        "run.max_steps_per_epoch=1",
        f"run.out_dir={tmp_path / 'run'}",
        *FAST,
    ]
    assert run_cli(train_main, [str(recipe), *overrides]) == 0
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["config"]["heads"] == {"centre2d": {}}


def test_demo_runs_a_centre2d_checkpoint(clip, tmp_path, capsys):  # noqa: F811
    torch.manual_seed(0)
    checkpoint = tmp_path / "centre.pt"
    save_model(build_model({"backbone": "selecsls42", "heads": {"centre2d": {}}}), checkpoint)
    video, people = tmp_path / "o.mp4", tmp_path / "o.json"
    argv = ["--checkpoint", str(checkpoint), "--input", str(clip[0]), "--input-size", "160x96"]
    argv += ["--output", str(video), "--json", str(people), "--headless", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert demo.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    assert f"{FRAMES} frames (0 unreadable skipped)" in capsys.readouterr().out
    assert len(read_video(video)) == FRAMES
    for record in json.loads(people.read_text())["frames"]:
        for person in record["people"]:
            assert np.array(person["keypoints"]).shape == (17, 3)


def test_onnx_export_and_int8_take_the_head(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from selecsls.tools import export

    torch.manual_seed(0)
    model = randomize_bn(build_model({"backbone": "selecsls42b", "heads": {"centre2d": {}}}))
    model.eval()
    checkpoint = save_model(model, tmp_path / "centre.pt")
    errors = export.export_checkpoint(str(checkpoint), str(tmp_path / "c.onnx"), (96, 64))
    assert set(errors) == {"heatmaps", "offsets"} and max(errors.values()) <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    odd = torch.randn(1, 3, 72, 104, generator=torch.Generator().manual_seed(1))  # 72 = 16 x 4.5
    got = dict(
        zip(("heatmaps", "offsets"), session.run(["heatmaps", "offsets"], {"images": odd.numpy()}))
    )
    with torch.no_grad():
        expected = model(odd)
    for key, array in got.items():
        reference = expected[key].numpy()
        assert array.shape == reference.shape
        assert np.abs(array - reference).max() <= 1e-4 * np.abs(reference).max()
    from selecsls.heads.pose2d.centre.codec import CentreCodec
    from selecsls.tools.realtime.loading import load_onnx_estimator

    estimator = load_onnx_estimator(str(tmp_path / "c.onnx"), None)  # codec from the metadata
    assert isinstance(estimator.codec, CentreCodec) and estimator.input_size == (96, 64)
    assert len(estimator(np.zeros((64, 96, 3), np.uint8)).keypoints) <= estimator.codec.max_people
    calibration = [letterboxed(image, SIZE) for image in images(4)]
    quantized = quantize_int8(model, calibration)
    errors = relative_errors(model, quantized, letterboxed(images(1, seed=8)[0], SIZE))
    assert set(errors) == {"heatmaps", "offsets"} and max(errors.values()) < 0.2, errors


def test_stage1_pairs_the_3d_branch_with_the_centre_head(tiny_pose_set, tmp_path):
    """model.head=centre2d in the pose3d task: a "centre3d" Stage I model trains, evaluates its
    3D metrics from the centre codec's people, and reloads for the 3D evaluation entry."""
    from test_pose3d_train import METRICS3D, data_section

    from selecsls.heads.pose3d.people import predict_people3d
    from selecsls.tools.engine.tasks.pose3d_eval import evaluate_pose3d_checkpoint, make_codecs

    config = {
        "task": "pose3d",
        "model": {"backbone": "selecsls42b", "width": 0.5, "head": "centre2d"},
        "data": {**data_section(tiny_pose_set), "batch_size": 4},
        "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.0},
        "schedule": {"epochs": 1, "warmup_epochs": 0.0},
        "eval": {"every": 1},
        "run": {"out_dir": str(tmp_path / "stage1"), "amp": "bf16", "log_every": 1},
    }
    (tmp_path / "pose3d.yaml").write_text(yaml.safe_dump(config))
    assert run_cli(train_main, [str(tmp_path / "pose3d.yaml"), *FAST]) == 0
    checkpoint = torch.load(tmp_path / "stage1" / "last.pt", weights_only=True)
    assert set(checkpoint["config"]["heads"]) == {"centre3d"}
    assert all(key in checkpoint["metrics"] for key in METRICS3D)
    rows = read_summary(tmp_path / "stage1")
    assert float(rows[0]["train_offset_loss"]) > 0 and float(rows[0]["train_locmap_loss"]) > 0
    val = tiny_pose_set / "val"
    metrics = evaluate_pose3d_checkpoint(
        str(tmp_path / "stage1" / "last.pt"), str(val / "annotations.json"), str(val / "images")
    )
    assert metrics["images"] == 4 and "pck" in metrics
    # the 2D people of the read-out are the centre codec's
    codec2d, codec3d = make_codecs({}, "centre2d")
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, :2] = np.random.default_rng(2).uniform(20, 100, (17, 2))
    person[0, :, 2] = 2
    outputs = dict(codec2d.encode(person, (128, 128)))
    outputs["locmaps"] = np.zeros((63, 16, 16), np.float32)
    people = predict_people3d(outputs, codec2d, codec3d, image_size=(128, 128))
    assert people["pose3d"].shape == (1, 21, 3)
    np.testing.assert_allclose(people["keypoints"][0, :, :2], person[0, :, :2], atol=0.05)


def test_benchmarks_take_the_head(run, capsys):
    """The oracle-split bench on the run's checkpoint, and the decode bench for the head."""
    from selecsls.tools.bench import decode, heads2d

    assert heads2d.main([str(run / "run" / "last.pt"), "--set", "refine_radius=2"]) == 0
    out = capsys.readouterr().out
    for variant in ("| decoded |", "| true centres |", "| true offsets |", "missed %"):
        assert variant in out
    with pytest.raises(ValueError, match="KEY=NUMBER"):
        heads2d.parse_overrides(["refine_radius"])
    assert decode.main(["--head", "centre2d", "--people", "2", "--frames", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("centre2d decode per frame") and lines[-1].split()[0] == "2"
