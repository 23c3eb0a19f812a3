"""What the engine needs from a task (classification now; 2D/3D pose next).

A task owns its config sections (`schema`: model, data, loss), builds the model and the two
datasets, turns a batch into a dict of losses, and evaluates a model into a dict of metrics.
The engine owns everything else: devices, DDP, AMP, optimiser, schedule, EMA, checkpoints, logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from selecsls.backbones.hub import is_published

from ..config import Schema
from ..distributed import DistInfo


@dataclass(frozen=True)
class EvalContext:
    """What the engine tells a task about one evaluation.

    epoch: epochs trained so far (1 after the first), the step of the "val" scalars, so
    pictures and metrics of one evaluation line up in TensorBoard; tag: "val" for the model,
    "val_ema" for its EMA (the TensorBoard prefix of the pictures); writer: the run's
    TensorBoard SummaryWriter on rank 0, None elsewhere, when logging is off, or for a
    standalone evaluation (tools/eval*.py): no pictures then; progress: a progress bar is wanted.
    """

    epoch: int = 0
    tag: str = "val"
    writer: Any = None
    progress: bool = False


class Task:
    """Base class: subclasses set `name`, `schema`, `best_metric`, and implement the methods."""

    name: str = ""
    schema: Schema = {}
    best_metric: str = ""  # a key of evaluate()'s dict
    best_mode: str = "max"  # "max" or "min"
    # Smallest batch a training step can use: a BatchNorm after global pooling (the classifier's
    # head) needs 2 images for its batch statistics. Smaller batches (unreadable files dropped)
    # are skipped by the engine.
    min_batch_size: int = 1

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def check(self) -> None:
        """Raise (FileNotFoundError / ValueError naming the key) before anything is built."""

    def prepare_data(self) -> None:
        """Runs once, on rank 0 only, before datasets are built (e.g. write a built-in dataset)."""

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def collate(self, items: list) -> Any:
        raise NotImplementedError

    def to_device(self, batch: Any, device: torch.device, train: bool, channels_last: bool) -> Any:
        """Move a collated batch to the device and finish preprocessing there."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward + losses; "loss" is the total that is back-propagated."""
        raise NotImplementedError

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        info: DistInfo,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        ctx: EvalContext | None = None,
    ) -> dict[str, float]:
        """Metrics over the whole validation set, reduced over ranks (identical on every rank).

        ctx: which evaluation this is and where its pictures go (None: a standalone one)."""
        raise NotImplementedError

    def checkpoint_extra(self) -> dict[str, Any]:
        """Task facts stored in every checkpoint (e.g. the class names, in index order)."""
        return {}

    def preview_images(self, batch: Any) -> torch.Tensor | None:
        """(N, 3, H, W) float images in [0, 1] for TensorBoard, or None."""
        return None


def check_weights(weights: str | None, key: str = "model.weights") -> None:
    """A clear error for a weight file that is neither there nor a published weight name. A
    relative path is read from the current folder (as run.out_dir is written there), so the
    error says where it looked: a recipe that names an earlier run's runs/... checkpoint has to
    run from the folder that run ran in."""
    if not weights or is_published(weights) or Path(weights).is_file():
        return
    where = "" if os.path.isabs(weights) else f" (looked in {Path(weights).absolute()})"
    raise FileNotFoundError(
        f"{key}: {weights} is neither a file nor a published weight name{where}"
    )
