"""Training checkpoints: last.pt every epoch, best.pt when the task's metric improves.

A checkpoint is our model file (`selecsls.heads.save_model`: format, version, model config,
state_dict) plus everything needed to continue exactly where training stopped: optimiser,
scheduler, AMP scaler, EMA, epoch, best metric, the experiment config and every rank's RNG
states. `selecsls.heads.load_model(path)` therefore rebuilds the trained model from the file
alone, and `run.resume` continues the run bit for bit (deterministic mode). Writes are atomic
(temporary file + rename), so a process killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selecsls.backbones.checkpoint import CheckpointError, read_checkpoint
from selecsls.heads import save_model

TRAIN_STATE = "train_state"


def rng_state() -> dict[str, Any]:
    """This process's python / numpy / torch (and CUDA) RNG states, as tensors and numbers
    (so the checkpoint loads with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], int(has_gauss), cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    experiment: dict[str, Any],
    epoch: int,
    best: float | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    ema: Any,
    rng_states: list[dict[str, Any]],
    metrics: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one checkpoint atomically. `epoch` is the number of completed epochs."""
    train_state = {
        "epoch": epoch,
        "best": best,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rng_states,
    }
    payload: dict[str, Any] = {
        **(extra or {}),
        "experiment": experiment,
        "metrics": metrics,
        TRAIN_STATE: train_state,
    }
    if ema is not None:
        # The EMA weights in the same key layout as state_dict: `tools/eval.py --ema` reads them.
        payload["ema_state_dict"] = ema.module.state_dict()
    return save_model(model, path, **payload)


def read_train_state(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(whole checkpoint dict, its train_state); CheckpointError if it has none."""
    obj = read_checkpoint(path)
    if TRAIN_STATE not in obj:
        raise CheckpointError(
            f"{path}: a model file without training state; it can initialise a model "
            "(model.weights=...) but cannot resume a run"
        )
    return obj, obj[TRAIN_STATE]


def restore(
    obj: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    ema: Any,
    rank: int,
    world_size: int,
) -> tuple[int, float | None]:
    """Load all training state into the given objects; returns (completed epochs, best)."""
    state = obj[TRAIN_STATE]
    model.load_state_dict(obj["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    if ema is not None:
        if state["ema"] is None:
            raise CheckpointError("the checkpoint has no EMA state but ema.enabled=true")
        ema.load_state_dict(state["ema"])
    rngs = state["rng"]
    if len(rngs) == world_size:
        set_rng_state(rngs[rank])
    else:  # a different number of processes: the run continues, not bit for bit
        print(
            f"warning: checkpoint was written by {len(rngs)} processes, now {world_size}; "
            "RNG states are re-seeded, so the continuation is not bit-identical"
        )
        torch.manual_seed(int(state["epoch"]) * 1000 + rank)
    return int(state["epoch"]), state["best"]
