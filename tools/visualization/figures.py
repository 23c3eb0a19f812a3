"""Figures of a finished run: learning curve, confusion matrix, contact sheet of annotated frames.

The plots use matplotlib's Agg backend (no display needed); every file is written to a temporary
name beside its target and renamed into place, so a failed run never leaves half a PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")  # before pyplot: headless machines have no GUI backend
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from selecsls.tools.realtime.outputs import temporary_beside  # noqa: E402

# One epoch record: {"epoch": int, column name: float}; a missing value is absent (not NaN).
EpochRecord = dict[str, float]
METRIC_LABELS = {"top1": "top-1 (%)", "top5": "top-5 (%)"}


def save_figure(figure, path: Path) -> Path:
    """Write a matplotlib figure to `path` (PNG) atomically and close it."""
    temporary = temporary_beside(path, ".png")
    try:
        figure.savefig(temporary, format="png", dpi=100)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
    return path


def save_image(image: np.ndarray, path: Path) -> Path:
    """Write a BGR uint8 image to `path` (PNG) atomically."""
    temporary = temporary_beside(path, ".png")
    try:
        if not cv2.imwrite(str(temporary), image):
            raise ValueError(f"{path}: OpenCV could not write the image")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def series(records: Sequence[EpochRecord], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the records that have `key` (e.g. only the evaluated epochs)."""
    points = [(r["epoch"], r[key]) for r in records if key in r and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curve(
    records: Sequence[EpochRecord],
    metric: str,
    path: Path,
    title: str,
    extra_metrics: Sequence[str] = (),
) -> Path:
    """Two panels side by side: the losses per epoch (train_* losses, val_loss when logged; log
    scale when they span over 20x) and val_<metric> (plus
    val_<extra>) per evaluated epoch, the best epoch marked. 1200x450 pixels."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    losses = sorted({k for r in records for k in r if k.startswith("train_") and "loss" in k})
    losses = ["train_loss", *[k for k in losses if k != "train_loss"]]  # the total first
    for key in [*losses, "val_loss"]:
        epochs, values = series(records, key)
        if epochs:
            style = {"linewidth": 2.2} if key in ("train_loss", "val_loss") else {"alpha": 0.6}
            left.plot(epochs, values, marker="o", markersize=3, label=key, **style)
    shown = [v for r in records for k, v in r.items() if k in (*losses, "val_loss")]
    if shown and min(shown) > 0 and max(shown) > 20 * min(shown):
        left.set_yscale("log")  # a from-scratch loss falls by orders of magnitude
    left.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    left.legend(fontsize=8)
    for key in (metric, *extra_metrics):
        epochs, values = series(records, f"val_{key}")
        if epochs:
            width = 2.2 if key == metric else 1.2
            name = METRIC_LABELS.get(key, key)
            right.plot(epochs, values, marker="o", linewidth=width, label=f"val {name}")
    epochs, values = series(records, f"val_{metric}")
    if not epochs:
        raise ValueError(f"learning curve: no epoch has val_{metric} (none was evaluated)")
    best = int(np.argmax(values))
    last = max(r["epoch"] for r in records)
    right_half = epochs[best] > (last + 1) / 2  # the label then ends at the point: never clipped
    right.annotate(
        f"best {values[best]:.4g}\n(epoch {epochs[best]:g})",
        (epochs[best], values[best]),
        textcoords="offset points",
        xytext=(-4 if right_half else 4, -34),
        ha="right" if right_half else "left",
        fontsize=9,
    )
    label = METRIC_LABELS.get(metric, metric)
    right.set(xlabel="epoch", ylabel=label, title=f"val {label} per evaluated epoch")
    right.legend(fontsize=8)
    for axes in (left, right):
        axes.set_xlim(0.5, last + 0.5)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class. labels, predictions: (N,)
    ints in [0, C)."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str
) -> Path:
    """A (C, C) count matrix as a heat map coloured by the row fraction (so rare and common
    classes read alike), each cell labelled with its count; about 7.5x6.5 inches at 100 dpi."""
    count = len(class_names)
    rows = matrix.sum(1, keepdims=True)
    fractions = matrix / np.maximum(rows, 1)
    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    shown = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, label="fraction of the true class")
    size = 9 if count <= 12 else 6
    for i in range(count):
        for j in range(count):
            if matrix[i, j]:
                colour = "white" if fractions[i, j] > 0.5 else "black"
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour,
                          fontsize=size)  # fmt: skip
    ticks = np.arange(count)
    axes.set_xticks(ticks, labels=class_names, fontsize=size)
    axes.set_yticks(ticks, labels=class_names, fontsize=size)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.tight_layout()
    return save_figure(figure, path)


def contact_sheet(
    images: Sequence[np.ndarray], columns: int, captions: Sequence[str] = ()
) -> np.ndarray:
    """A grid of BGR uint8 images (each resized to the first one's (H, W)), `columns` wide, empty
    cells dark grey: (ceil(N / columns) * H, min(N, columns) * W, 3). A caption is drawn in the
    bottom left corner of its tile."""
    if not images:
        raise ValueError("contact sheet: no images")
    height, width = images[0].shape[:2]
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    sheet = np.full((rows * height, columns * width, 3), 48, np.uint8)
    for n, image in enumerate(images):
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        tile = sheet[(n // columns) * height :, (n % columns) * width :][:height, :width]
        tile[:] = image
        if n < len(captions) and captions[n]:
            at, font = (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX
            cv2.putText(tile, captions[n], at, font, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(tile, captions[n], at, font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    # thin separators so neighbouring tiles of similar backgrounds stay apart
    sheet[:, width::width][:, : columns - 1] = 0
    sheet[height::height][: rows - 1] = 0
    return sheet
