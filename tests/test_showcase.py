"""tools/showcase.py: the figures of a finished run (learning curve, pose video + contact sheet,
classifier confusion matrix), on tiny runs trained here, and the plotting pieces on known data.

Nothing here depends on what the briefly trained networks predict: only on the files' presence,
sizes, frame counts and that the images are not blank."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from selecsls.tools._cli import run_cli
from selecsls.tools.showcase import main as showcase_main
from selecsls.tools.train import main as train_main
from selecsls.tools.visualization.figures import (
    confusion_matrix,
    contact_sheet,
    plot_confusion_matrix,
    plot_learning_curve,
)

FAST = ["run.progress=false", "run.threads=2", "run.amp=none", "run.channels_last=false"]
SCENE = 96  # synthetic scene size of the tiny pose run (the showcase draws it 2x larger)


def showcase(argv: list[str]) -> int:
    return run_cli(showcase_main, argv)


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return image


def assert_not_blank(image: np.ndarray) -> None:
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # more than a few flat colours


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory) -> Path:
    """2 epochs of a quarter-width pose2d network on 8 generated 96x96 scenes, each evaluated."""
    tmp = tmp_path_factory.mktemp("showcase_pose")
    data = {
        "prepare": "synthetic", "root": str(tmp / "data"),
        "train_json": "train/annotations.json", "train_images": "train/images",
        "val_json": "val/annotations.json", "val_images": "val/images",
        "synthetic_train_images": 8, "synthetic_val_images": 4, "synthetic_max_people": 2,
        "synthetic_size": f"{SCENE}x{SCENE}", "input_size": f"{SCENE}x{SCENE}",
        "synthetic_depth": [1.5, 3.0],
        "batch_size": 4, "eval_batch_size": 4, "workers": 0,
    }  # fmt: skip
    config = {
        "task": "pose2d",
        "model": {"backbone": "selecsls42b", "width": 0.25},
        "data": data,
        "optim": {"name": "adamw", "lr": 2.0e-3},
        "schedule": {"epochs": 2, "warmup_epochs": 0.0},
        "eval": {"every": 1, "previews": 0},
        "run": {"out_dir": str(tmp / "run")},
    }
    path = tmp / "pose.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli(train_main, [str(path), *FAST]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory) -> Path:
    """2 epochs of a classifier on 3 classes x 4 tiny images (the digits recipe's settings)."""
    tmp = tmp_path_factory.mktemp("showcase_classifier")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(3):
            folder = tmp / "data" / split / str(k)
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
                pixels[..., k] += 150
                Image.fromarray(pixels).save(folder / f"{i}.png")
    recipe = Path(__file__).resolve().parents[1] / "configs" / "quickstart" / "digits.yaml"
    overrides = [
        f"data.root={tmp / 'data'}", "data.prepare=none", f"run.out_dir={tmp / 'run'}",
        "data.batch_size=4", "data.eval_batch_size=8", "schedule.epochs=2",
        "eval.bn_recalibrate=1", *FAST,
    ]  # fmt: skip
    assert run_cli(train_main, [str(recipe), *overrides]) == 0
    return tmp / "run"


def test_pose_run_gets_curve_video_and_contact_sheet(pose_run, tmp_path, capsys):
    out = tmp_path / "figures"
    out.mkdir()
    argv = [str(pose_run), "--out-dir", str(out), "--scenes", "5", "--columns", "3"]
    assert showcase([*argv, "--threads", "1", "--device", "cpu", "--precision", "fp32"]) == 0
    written = [out / "learning_curve.png", out / "showcase.mp4", out / "contact_sheet.png"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3:] == [str(p) for p in written]  # the paths come last
    curve = read_png(written[0])
    assert curve.shape == (450, 1200, 3)
    assert_not_blank(curve)
    side = 2 * SCENE  # --zoom 2 (default)
    sheet = read_png(written[2])
    assert sheet.shape == (2 * side, 3 * side, 3)  # 5 tiles, 3 a row: 2 rows
    assert_not_blank(sheet[:side, :side])
    assert (sheet[side + 10 : -10, 2 * side + 10 : -10] == 48).all()  # the 6th cell is empty
    video = cv2.VideoCapture(str(written[1]))
    assert video.isOpened()
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    video.release()
    assert len(frames) == 5 and frames[0].shape == (side, side, 3)
    assert_not_blank(frames[-1])
    assert not list(out.glob(".demo-*"))  # no temporary file left behind


def test_pose_showcase_shows_an_image_folder(pose_run, tmp_path, capsys):
    shutil.copytree(pose_run, tmp_path / "run")
    images = pose_run.parent / "data" / "val" / "images"
    argv = [str(tmp_path / "run"), "--images", str(images), "--zoom", "1", "--scenes", "9"]
    assert showcase([*argv, "--threads", "1", "--device", "cpu", "--precision", "fp32"]) == 0
    sheet = read_png(tmp_path / "run" / "contact_sheet.png")
    assert sheet.shape == (SCENE, 4 * SCENE, 3)  # the folder holds 4 images: one row
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(
        tmp_path / "run" / "contact_sheet.png"
    )


def test_classifier_run_gets_curve_and_confusion_matrix(classifier_run, tmp_path, capsys):
    shutil.copytree(classifier_run, tmp_path / "run")
    assert showcase([str(tmp_path / "run"), "--device", "cpu"]) == 0
    written = [tmp_path / "run" / "learning_curve.png", tmp_path / "run" / "confusion_matrix.png"]
    assert capsys.readouterr().out.strip().splitlines()[-2:] == [str(p) for p in written]
    for path in written:
        assert_not_blank(read_png(path))
    assert not (tmp_path / "run" / "showcase.mp4").exists()


def test_missing_best_pt_is_a_clean_error(tmp_path, capsys):
    assert showcase([str(tmp_path)]) == 2
    assert str(tmp_path / "best.pt") in capsys.readouterr().err


def test_run_without_an_evaluated_epoch_is_a_clean_error(pose_run, tmp_path, capsys):
    shutil.copy(pose_run / "best.pt", tmp_path / "best.pt")
    (tmp_path / "summary.csv").write_text("epoch,train_loss\n1,2.5\n2,1.5\n")
    assert showcase([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "summary.csv") in err and "evaluated" in err


def test_confusion_matrix_counts_known_labels(tmp_path):
    labels = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 2, 0, 2])
    matrix = confusion_matrix(labels, predictions, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows: true class
    path = plot_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "cm.png", "known")
    assert_not_blank(read_png(path))
    with pytest.raises(ValueError):
        confusion_matrix(labels, predictions[:-1], 3)


def test_learning_curve_of_known_records(tmp_path):
    # evaluated every second epoch, as with eval.every=2: the val points only where measured
    records = [{"epoch": e, "train_loss": 10.0 / e} for e in range(1, 7)]
    for record in records[1::2]:
        record["val_AP"] = 0.05 * record["epoch"]
    path = plot_learning_curve(records, "AP", tmp_path / "curve.png", "known", ("AP50",))
    image = read_png(path)
    assert image.shape == (450, 1200, 3)
    assert_not_blank(image)
    with pytest.raises(ValueError, match="val_AP"):
        plot_learning_curve(records[:1], "AP", tmp_path / "none.png", "no evaluation")
    assert not (tmp_path / "none.png").exists()


def test_contact_sheet_grid():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    images = [np.full((20, 30, 3), c, np.uint8) for c in colours]
    images[4] = np.full((40, 60, 3), colours[4], np.uint8)  # another size: resized to the first
    sheet = contact_sheet(images, columns=3)
    assert sheet.shape == (40, 90, 3)
    assert tuple(sheet[10, 15]) == colours[0] and tuple(sheet[30, 45]) == colours[4]
    assert tuple(sheet[30, 75]) == (48, 48, 48)  # the empty sixth cell
    assert contact_sheet(images[:2], columns=4).shape == (20, 60, 3)  # no wider than needed
    with pytest.raises(ValueError):
        contact_sheet([], columns=2)
