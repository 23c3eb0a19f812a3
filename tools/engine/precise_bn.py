"""Re-estimate BatchNorm running statistics from training batches before evaluation.

BN's running averages (momentum 0.1) trail the weights: early in training, or in short runs
such as the quickstart, they describe a network from many steps ago, and evaluation (which
uses them) can collapse to one class although training batches are classified well. Averaging
the statistics of a few batches under the current weights fixes that (pycls' "precise BN").
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .distributed import DistInfo

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    loader: Any,
    task: Any,
    batches: int,
    info: DistInfo,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> int:
    """Replace every BN layer's running mean/var by their average over `batches` batches (and
    over ranks). Returns the number of batches used (0: nothing changed)."""
    layers = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    if not layers or batches <= 0:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # None = cumulative average over the batches seen
    model.train()
    used = 0
    try:
        for batch in islice(loader, batches):
            batch = task.to_device(batch, info.device, True, channels_last)
            if task.batch_size(batch) < 2:
                continue
            with torch.autocast(
                info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                model(batch["images"])
            used += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    if info.enabled:
        for m in layers:
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf.div_(info.world_size)
    return used
