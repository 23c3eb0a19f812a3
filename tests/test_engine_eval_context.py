"""The engine tells Task.evaluate which evaluation it is (EvalContext: epoch, tag, writer), and
the pose3d task draws its TensorBoard previews into the run's own event file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from conftest import pose_data_section
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine_train import experiment

from selecsls.tools.engine.distributed import DistInfo
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.engine.tasks.base import EvalContext
from selecsls.tools.engine.tasks.pose3d_preview import draw_pose3d_preview
from selecsls.tools.engine.trainer import Trainer

FAST = ["run.progress=false", "data.workers=0", "run.threads=2"]


def events(out_dir: Path) -> EventAccumulator:
    """Everything the run wrote under out_dir/tb (scalars and images kept whole)."""
    files = list((out_dir / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1, files  # one writer: the engine's
    accumulator = EventAccumulator(str(files[0]), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def spy_on_evaluate(task) -> list[EvalContext]:
    seen: list[EvalContext] = []
    original = task.evaluate

    def evaluate(model, loader, info, amp_dtype, channels_last, ctx=None):
        seen.append(ctx)
        return original(model, loader, info, amp_dtype, channels_last, ctx)

    task.evaluate = evaluate
    return seen


def test_evaluate_gets_epoch_tag_and_the_engine_writer(tmp_path):
    task, config = experiment(tmp_path, "run", ["ema.enabled=true", "run.preview_images=2"])
    seen = spy_on_evaluate(task)
    trainer = Trainer(task, config)
    trainer.fit()
    assert [(c.epoch, c.tag) for c in seen] == [
        (1, "val"),
        (1, "val_ema"),
        (2, "val"),
        (2, "val_ema"),
    ]
    assert all(c.writer is trainer.log.writer is not None for c in seen)
    assert not any(c.progress for c in seen)  # run.progress=false
    # ctx.epoch is the step of the val scalars: pictures and metrics of one evaluation line up
    found = events(tmp_path / "run")
    steps = [event.step for event in found.Scalars("val/top1")]
    assert steps == [c.epoch for c in seen if c.tag == "val"]
    # run.preview_images caps the training inputs shown (a batch holds 4 of 32x32, tiled in a row)
    (inputs,) = found.Images("train/inputs")
    assert (inputs.width, inputs.height) == (2 * 32, 32)


def pose3d_config(tmp_path: Path, root: Path, previews: int) -> Path:
    config = {
        "task": "pose3d",
        "model": {"backbone": "selecsls42b"},
        "data": {**pose_data_section(root), "batch_size": 4},
        "schedule": {"epochs": 1, "warmup_epochs": 0.0},
        "eval": {"previews": previews},
        "ema": {"enabled": True},
        "run": {"out_dir": str(tmp_path / "run"), "amp": "bf16", "max_steps_per_epoch": 1},
    }
    path = tmp_path / "pose3d.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pose3d_run_writes_previews_into_the_engine_event_file(tmp_path, tiny_pose_set):
    task, config = load_experiment(pose3d_config(tmp_path, tiny_pose_set, 3), FAST)
    seen = spy_on_evaluate(task)
    Trainer(task, config).fit()
    assert [(c.epoch, c.tag) for c in seen] == [(1, "val"), (1, "val_ema")]
    found = events(tmp_path / "run")
    tags = found.Tags()["images"]
    for tag in ("val/preview", "val_ema/preview"):
        assert tag in tags, tags
        (image,) = found.Images(tag)  # one evaluation, at step epoch 1
        assert image.step == 1
        # 3 panels image | front view | side view (each as high as the 128x128 input), which
        # add_images tiles side by side
        assert (image.width, image.height) == (3 * (128 + 2 * 128), 128)
    assert not list((tmp_path / "run" / "tb").glob("*previews*"))  # no second writer


class RecordingWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, int]] = []

    def add_images(self, tag: str, images: torch.Tensor, step: int) -> None:
        self.calls.append((tag, tuple(images.shape), step))


def test_pose3d_previews_follow_eval_previews_and_rank(tmp_path, tiny_pose_set):
    task, config = load_experiment(pose3d_config(tmp_path, tiny_pose_set, 2), FAST)
    model = task.build_model()
    _, val = task.build_datasets()
    loader = torch.utils.data.DataLoader(val, 4, collate_fn=task.collate)
    writer = RecordingWriter()
    main, other = DistInfo(), DistInfo(rank=1)  # world size 1: no process group needed
    metrics = task.evaluate(model, loader, main, None, False, EvalContext(7, "val_ema", writer))
    assert writer.calls == [("val_ema/preview", (2, 3, 128, 384), 7)]
    writer.calls.clear()
    assert task.evaluate(
        model, loader, other, None, False, EvalContext(7, "val", writer)
    ).keys() == (metrics.keys())
    task.evaluate(model, loader, main, None, False, None)  # standalone: nowhere to draw
    config["eval"]["previews"] = 0
    task.evaluate(model, loader, main, None, False, EvalContext(8, "val", writer))
    assert writer.calls == []


def test_preview_panel_draws_people_in_both_views():
    image = torch.zeros(3, 64, 96, dtype=torch.uint8)
    keypoints = np.zeros((2, 17, 3))
    keypoints[:, :, :2] = np.random.default_rng(0).uniform(10, 50, (2, 17, 2))
    keypoints[:, :, 2] = 1
    poses = np.random.default_rng(1).normal(0, 300, (2, 21, 3))
    poses[1, :5] = np.nan  # joints not read out are left out, not drawn at NaN
    panel = draw_pose3d_preview(image, keypoints, poses)
    assert panel.shape == (64, 96 + 2 * 64, 3) and panel.dtype == np.uint8
    skeletons, front, side = panel[:, :96], panel[:, 96:160], panel[:, 160:]
    assert skeletons.any()  # drawn on a black image
    empty = draw_pose3d_preview(image, keypoints[:0], poses[:0])
    for view, blank in ((front, empty[:, 96:160]), (side, empty[:, 160:])):
        assert (view != blank).mean() > 0.02  # bones drawn beyond the background and title
