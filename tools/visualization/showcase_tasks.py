"""The task-specific figures of `showcase.make_showcase`: pose video + contact sheet, and the
classifier's confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from selecsls.tools._cli import parse_size
from selecsls.tools.visualization.figures import (
    confusion_matrix,
    contact_sheet,
    plot_confusion_matrix,
    save_image,
)


def annotate_scenes(estimator, images: list[np.ndarray], fps: float) -> list[np.ndarray]:
    """Each BGR image (H, W, 3) through the demo's own step (network, decoding, tracking,
    drawing with the FPS counter) -> annotated images (H, W', 3) (W' > W with a 3D panel).

    Each scene gets a fresh tracker: the scenes are unrelated cuts, and a tracker carried over
    would match a person of one scene to a stranger of the next and smooth the two together."""
    from selecsls.tools.realtime.app import FpsMeter, step
    from selecsls.tools.realtime.sources import Frame
    from selecsls.tools.realtime.tracking import Tracker

    meter, canvases = FpsMeter(), []
    for index, image in enumerate(images):
        frame = Frame(index, image, index / fps)
        inference = estimator.infer(image)
        tracker = Tracker(sigmas=estimator.codec.keypoint_skeleton.sigma_array)
        canvas, _, _ = step(frame, inference, estimator, tracker, meter.tick(), image.shape[0])
        canvases.append(canvas)
    return canvases


def pose_figures(
    checkpoint: Path,
    experiment: dict[str, Any],
    images: list[np.ndarray],
    captions: list[str],
    out_dir: Path,
    options,
) -> list[Path]:
    """out_dir/showcase.mp4 (one scene per frame at options.fps) and out_dir/contact_sheet.png
    (options.columns tiles wide) of the images annotated by the run's network."""
    from selecsls.tools.realtime.loading import load_torch_estimator
    from selecsls.tools.realtime.outputs import VideoOutput

    size = parse_size(experiment.get("data", {}).get("input_size", "368x368"), "data.input_size")
    estimator = load_torch_estimator(str(checkpoint), size, options.device, options.precision)
    print(
        f"{len(images)} scenes -> {estimator.runner.description}, input "
        f"{'x'.join(map(str, estimator.input_size))}"
    )
    canvases = annotate_scenes(estimator, images, options.fps)
    video_path = out_dir / "showcase.mp4"
    video, complete = VideoOutput(str(video_path), options.fps), False
    try:
        first = canvases[0].shape
        for canvas in canvases:  # one size per video: a folder's images may differ
            if canvas.shape != first:
                canvas = _resized(canvas, first)
            video.write(canvas)
        complete = True
    finally:
        video.finish(keep=complete)
    sheet = save_image(
        contact_sheet(canvases, options.columns, captions), out_dir / "contact_sheet.png"
    )
    return [video_path, sheet]


def _resized(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def classification_figures(
    checkpoint: Path, contents: dict[str, Any], out_dir: Path, options
) -> list[Path]:
    """out_dir/confusion_matrix.png of the run's network over its val folder (the run's eval
    preprocessing and class order)."""
    from selecsls.datasets.imagenet import ImageFolder, collate
    from selecsls.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform
    from selecsls.heads import load_model
    from selecsls.tools.engine.tasks.classification import ClassificationTask, predict

    data = contents["experiment"].get("data", {})
    folder = Path(data.get("root", ".")) / data.get("val_dir", "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (the run's data.root/data.val_dir)")
    transform = EvalTransform(
        data.get("image_size", 224),
        data.get("crop_pct", 0.875),
        data.get("interpolation", "bicubic"),
    )
    dataset = ImageFolder(folder, transform, list(contents.get("classes") or []) or None)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if options.device == "auto"
        else options.device
    )  # fmt: skip
    model = load_model(str(checkpoint)).to(device).eval()
    normalise = {
        "mean": data.get("mean", list(IMAGENET_MEAN)),
        "std": data.get("std", list(IMAGENET_STD)),
        "random_erasing": 0.0,
    }
    task = ClassificationTask({"data": normalise})
    batch_size = data.get("eval_batch_size") or 128
    loader = DataLoader(dataset, batch_size, collate_fn=collate)
    labels, predictions = [], []
    for batch, logits in predict(task, model, loader, device, None, False):
        if len(batch["labels"]):
            labels.append(batch["labels"].cpu().numpy())
            predictions.append(logits.argmax(1).cpu().numpy())
    if not labels:
        raise ValueError(f"{folder}: no readable val images")
    matrix = confusion_matrix(np.concatenate(labels), np.concatenate(predictions),
                              len(dataset.classes))  # fmt: skip
    top1 = 100.0 * np.trace(matrix) / max(matrix.sum(), 1)
    title = f"{checkpoint.parent.name}: val top-1 {top1:.2f}% ({matrix.sum()} images)"
    path = out_dir / "confusion_matrix.png"
    return [plot_confusion_matrix(matrix, dataset.classes, path, title)]
