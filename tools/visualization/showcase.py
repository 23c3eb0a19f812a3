"""Something to look at after a run: its learning curve and its network at work.

`make_showcase(run_dir, options)` reads run_dir/best.pt (the resolved config inside it) and
run_dir/summary.csv (one row per epoch, written by tools/engine/logs.py) and writes into the
run folder (or options.out_dir):
- every run: learning_curve.png (losses per epoch, val metric per evaluated epoch);
- a 2D/3D pose run: showcase.mp4 and contact_sheet.png, unseen scenes through the demo's own
  pieces (tools/realtime: estimator, tracker, drawing); for a synthetic-data run, fresh scenes of
  the generator at a seed neither training nor validation used, else the run's val images;
- a classification run: confusion_matrix.png over its val folder.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from selecsls.backbones.checkpoint import read_checkpoint
from selecsls.tools._cli import parse_size
from selecsls.tools.engine.tasks import TASKS
from selecsls.tools.visualization.figures import EpochRecord, plot_learning_curve
from selecsls.tools.visualization.showcase_tasks import classification_figures, pose_figures

POSE_TASKS = ("pose2d", "pose3d")
EXTRA_METRICS = {"AP": ("AP50",), "top1": ("top5",)}  # drawn thinner beside the best metric


@dataclass
class ShowcaseOptions:
    """The command line's options (see tools/showcase.py)."""

    out_dir: str | None = None
    scenes: int = 12
    columns: int = 4
    seed: int | None = None  # default: data.synthetic_seed + 2 (train uses +0, val +1)
    zoom: int = 2
    fps: float = 2.0
    images: str | None = None
    device: str = "auto"
    precision: str = "auto"


@dataclass
class RunInfo:
    """What a finished run folder holds: the checkpoint, its resolved config and epoch rows."""

    run_dir: Path
    checkpoint: Path
    contents: dict[str, Any]
    experiment: dict[str, Any]
    task: str
    metric: str
    records: list[EpochRecord]


def read_summary(path: Path) -> list[EpochRecord]:
    """summary.csv -> one record per epoch ({"epoch", column: float}; blank cells left out:
    with eval.every > 1 the epochs between evaluations have no val_ values)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the run's per-epoch log)")
    records = []
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            record: EpochRecord = {}
            for key, text in row.items():
                try:
                    record[key] = float(text)
                except (TypeError, ValueError):
                    continue
            if "epoch" in record:
                records.append(record)
    if not records:
        raise ValueError(f"{path}: holds no epoch rows")
    return records


def read_run(run_dir: str | Path) -> RunInfo:
    """RunInfo of run_dir; FileNotFoundError / ValueError naming the file that is missing or
    unusable (no best.pt, no config in it, no evaluated epoch in summary.csv)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    checkpoint = run_dir / "best.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such file (train the run first)")
    contents = read_checkpoint(checkpoint)
    experiment = contents.get("experiment")
    if not isinstance(experiment, dict) or experiment.get("task") not in TASKS:
        raise ValueError(f"{checkpoint}: holds no training config of a known task")
    task = experiment["task"]
    metric = TASKS[task].best_metric
    records = read_summary(run_dir / "summary.csv")
    if not any(f"val_{metric}" in r for r in records):
        raise ValueError(
            f"{run_dir / 'summary.csv'}: no epoch was evaluated (no val_{metric} value)"
        )
    return RunInfo(run_dir, checkpoint, contents, experiment, task, metric, records)


def learning_curve(run: RunInfo, out_dir: Path) -> Path:
    """out_dir/learning_curve.png of the run's epoch records."""
    epoch = (run.contents.get("train_state") or {}).get("epoch")
    value = (run.contents.get("metrics") or {}).get(run.metric)
    best = f", best.pt: epoch {epoch}, val {run.metric} {value:.4g}" if value is not None else ""
    backbone = run.experiment.get("model", {}).get("backbone", "")
    title = f"{run.run_dir}: {run.task}, {backbone}{best}"
    extra = EXTRA_METRICS.get(run.metric, ())
    return plot_learning_curve(
        run.records, run.metric, out_dir / "learning_curve.png", title, extra
    )


def synthetic_scenes(
    data: dict[str, Any], count: int, seed: int, zoom: int
) -> tuple[list[np.ndarray], list[str]]:
    """`count` fresh scenes of the run's synthetic generator settings (size, people, depth) at
    `seed`: (BGR uint8 images (H * zoom, W * zoom, 3), captions with the labelled people). The
    zoom (cubic) only enlarges the drawing; the demo letterboxes the frame back down, so the
    network sees nearly the pixels it was trained on."""
    from selecsls.datasets.synthetic_people import DEPTH_RANGE, render_image

    width, height = parse_size(data.get("synthetic_size", "368x368"), "data.synthetic_size")
    depth = tuple(data.get("synthetic_depth") or DEPTH_RANGE)
    max_people = int(data.get("synthetic_max_people", 5))
    images, captions = [], []
    for index in range(count):
        image, _, people = render_image(index, seed, width, height, max_people, depth)
        labelled = sum(1 for p in people if p["num_keypoints"] > 0)
        images.append(enlarge(image, zoom))
        captions.append(f"scene {index + 1}: {labelled} labelled")
    return images, captions


def folder_scenes(folder: Path, count: int, zoom: int) -> tuple[list[np.ndarray], list[str]]:
    """The first `count` readable images of `folder` (name order), enlarged by `zoom`."""
    from selecsls.tools.realtime.sources import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    images, captions = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None and image.size:
            images.append(enlarge(image, zoom))
            captions.append(path.name)
        if len(images) == count:
            break
    if not images:
        raise ValueError(f"{folder}: no readable images")
    return images, captions


def enlarge(image: np.ndarray, zoom: int) -> np.ndarray:
    if zoom == 1:
        return image
    size = (image.shape[1] * zoom, image.shape[0] * zoom)
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def pose_scenes(run: RunInfo, options: ShowcaseOptions) -> tuple[list[np.ndarray], list[str]]:
    """Fresh synthetic scenes for a synthetic-data run, else --images, else the val images."""
    data = run.experiment.get("data", {})
    if options.images:
        return folder_scenes(Path(options.images), options.scenes, options.zoom)
    if data.get("prepare") == "synthetic":
        seed = options.seed if options.seed is not None else int(data.get("synthetic_seed", 0)) + 2
        return synthetic_scenes(data, options.scenes, seed, options.zoom)
    folder = Path(data.get("root", ".")) / data.get("val_images", "")
    return folder_scenes(folder, options.scenes, options.zoom)


def make_showcase(run_dir: str | Path, options: ShowcaseOptions) -> list[Path]:
    """Write the run's figures (see the module docstring); returns their paths."""
    if options.scenes < 1 or options.columns < 1 or options.zoom < 1:
        raise ValueError("--scenes, --columns and --zoom must be at least 1")
    if not math.isfinite(options.fps) or options.fps <= 0:
        raise ValueError(f"--fps must be positive, got {options.fps}")
    run = read_run(run_dir)
    out_dir = Path(options.out_dir) if options.out_dir else run.run_dir
    if not out_dir.is_dir():
        raise FileNotFoundError(f"--out-dir {out_dir}: no such folder")
    written = [learning_curve(run, out_dir)]
    if run.task in POSE_TASKS:
        images, captions = pose_scenes(run, options)
        written += pose_figures(run.checkpoint, run.experiment, images, captions, out_dir,
                                options)  # fmt: skip
    elif run.task == "classification":
        written += classification_figures(run.checkpoint, run.contents, out_dir, options)
    return written
