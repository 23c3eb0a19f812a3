"""Exponential moving average of a model's weights (evaluated and checkpointed beside it)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .config import Field, Schema

SCHEMA: Schema = {
    "ema": {
        "enabled": Field(False, "bool"),
        "decay": Field(0.9998, "float"),
        # Early on the average is mostly the random init; ramping the decay as (1+n)/(10+n)
        # lets short runs (and the quickstart) benefit from EMA too.
        "warmup": Field(True, "bool"),
    },
}


class ModelEma:
    """ema = decay * ema + (1 - decay) * weights after each optimiser step; buffers are copied.

    The copy lives on the model's device in float32 and is never trained; `module` is a plain
    Model, so it is evaluated and saved exactly like the trained one.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self.updates = 0

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        ema_state = self.module.state_dict()
        for key, value in model.state_dict().items():
            target = ema_state[key]
            if value.dtype.is_floating_point:
                target.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                target.copy_(value)  # e.g. BN's num_batches_tracked

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
