"""Optimisers and the learning-rate schedule, built from the `optim` and `schedule` sections."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import Field, Schema

SCHEMA: Schema = {
    "optim": {
        "name": Field("sgd", "choice", ("sgd", "adamw", "adam")),
        "lr": Field(0.1, "float", help="peak learning rate (after warmup), not scaled by batch"),
        "momentum": Field(0.9, "float"),
        "nesterov": Field(True, "bool"),
        "weight_decay": Field(5e-5, "float"),
        "betas": Field([0.9, 0.999], "floats"),
        "eps": Field(1e-8, "float"),
        # Implicit filter sparsity needs L2 on BN gammas too, so decaying them is a choice.
        "decay_norm_and_bias": Field(False, "bool"),
        "clip_grad_norm": Field(None, "float", optional=True),
        "accum_steps": Field(1, "int"),
    },
    "schedule": {
        "name": Field("cosine", "choice", ("cosine", "constant")),
        "epochs": Field(10, "int"),
        "warmup_epochs": Field(0.0, "float"),
        "warmup_start_ratio": Field(0.01, "float", help="lr at step 0 as a fraction of optim.lr"),
        "min_lr_ratio": Field(0.0, "float", help="final cosine lr as a fraction of optim.lr"),
    },
}


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Two groups: weights that decay, and (unless decay_norm_and_bias) 1-D tensors that don't.

    1-D tensors are BN scales/shifts and biases; excluding them is the timm/torchvision habit,
    including them is what Adam + L2 needs to drive BN gammas (and thus filters) to zero.
    """
    if decay_norm_and_bias:
        return [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "weight_decay": weight_decay,
            }
        ]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), AdamW (decoupled decay) or Adam with coupled L2.

    torch's Adam adds weight_decay * w to the gradient before the moment estimates: that is
    the coupled L2 penalty behind implicit filter sparsity; AdamW decays weights directly.
    """
    groups = param_groups(model, cfg["weight_decay"], cfg["decay_norm_and_bias"])
    name, lr = cfg["name"], cfg["lr"]
    if name == "sgd":
        nesterov = cfg["nesterov"] and cfg["momentum"] > 0
        return torch.optim.SGD(groups, lr=lr, momentum=cfg["momentum"], nesterov=nesterov)
    if len(cfg["betas"]) != 2:
        raise ValueError(f"optim.betas must hold two numbers, got {cfg['betas']}")
    betas = tuple(cfg["betas"])
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=cfg["eps"])
    return torch.optim.Adam(groups, lr=lr, betas=betas, eps=cfg["eps"])


class WarmupCosine:
    """lr factor of step t: linear warmup from `start` to 1, then cosine from 1 to `floor`.

    A callable object rather than a lambda: LambdaLR then saves its attributes (plain numbers)
    in state_dict, and the factor is a pure function of the step, so resuming reproduces it.
    """

    def __init__(
        self, total_steps: int, warmup_steps: int, start: float, floor: float, cosine: bool
    ) -> None:
        self.total, self.warmup = max(total_steps, 1), max(warmup_steps, 0)
        self.start, self.floor, self.cosine = start, floor, cosine

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (1.0 - self.start) * step / self.warmup
        if not self.cosine:
            return 1.0
        span = max(self.total - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: dict[str, Any], steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimiser-step schedule (warmup + cosine or constant) over schedule.epochs."""
    factor = WarmupCosine(
        total_steps=cfg["epochs"] * steps_per_epoch,
        warmup_steps=round(cfg["warmup_epochs"] * steps_per_epoch),
        start=cfg["warmup_start_ratio"],
        floor=cfg["min_lr_ratio"],
        cosine=cfg["name"] == "cosine",
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
