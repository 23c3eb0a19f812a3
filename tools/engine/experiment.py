"""An experiment = a task + its resolved config: the engine's keys plus the task's sections."""

from __future__ import annotations

import os
from typing import Any

from . import ema, optim
from .amp import AMP_CHOICES
from .config import ConfigError, Field, Schema, merge_schemas, read_yaml, resolve
from .tasks import TASKS, Task

ENGINE_SCHEMA: Schema = {
    "data": {
        "batch_size": Field(64, "int", help="per process; the global batch is x world size"),
        "eval_batch_size": Field(None, "int", optional=True, help="default: 2 x batch_size"),
        "workers": Field(4, "int", help="data-loading processes per training process"),
    },
    "eval": {
        "every": Field(1, "int", help="evaluate every N epochs (and after the last)"),
        # >0: re-estimate BN statistics from this many training batches before evaluating
        # (short runs need it: BN's running averages trail the weights; see precise_bn.py)
        "bn_recalibrate": Field(0, "int"),
    },
    "run": {
        "out_dir": Field("runs/experiment", "path"),
        "seed": Field(0, "int"),
        "deterministic": Field(False, "bool", help="deterministic kernels (slower)"),
        "device": Field("auto", "choice", ("auto", "cpu", "cuda")),
        "dist_backend": Field("auto", "choice", ("auto", "nccl", "gloo")),
        "amp": Field(
            "none",
            "choice",
            AMP_CHOICES,
            help="auto: bf16 where native (AMX, CUDA), else none/fp16",
        ),
        "channels_last": Field(True, "bool"),
        "compile": Field(False, "bool", help="torch.compile the training model"),
        "threads": Field(None, "int", optional=True, help="torch CPU threads per process"),
        "resume": Field(False, "bool_or_path", help="true: out_dir/last.pt; or a checkpoint"),
        "log_every": Field(20, "int", help="steps between TensorBoard scalar points"),
        "preview_images": Field(8, "int", help="training images shown in TensorBoard"),
        "progress": Field(True, "bool", help="tqdm progress bars (rank 0)"),
        "max_steps_per_epoch": Field(None, "int", optional=True, help="cut epochs short"),
        "keep_epochs": Field(False, "bool", help="also keep epoch_N.pt for every epoch"),
    },
}


def experiment_schema(task: type[Task]) -> Schema:
    return merge_schemas(task.schema, ENGINE_SCHEMA, optim.SCHEMA, ema.SCHEMA)


def load_experiment(
    path: str | os.PathLike, overrides: list[str] = (), check_task: bool = True
) -> tuple[Task, dict]:
    """Read, validate and resolve a config file; returns (task, config with "task" first).

    Raises ConfigError (a ValueError) for unknown sections/keys, wrong types, bad choices,
    and FileNotFoundError/ValueError from the task's own checks (data folders, weights), which
    check_task=False skips (to show a config whose data is not on this machine).
    """
    raw = read_yaml(path)
    overrides = list(overrides)
    task_name = raw.get("task", "classification")
    for text in overrides:  # `task=...` on the command line
        if text.startswith("task="):
            task_name = text.split("=", 1)[1]
    if task_name not in TASKS:
        raise ConfigError(f"{path}: unknown task {task_name!r}; valid tasks: {', '.join(TASKS)}")
    overrides = [o for o in overrides if not o.startswith("task=")]
    task_cls = TASKS[task_name]
    sections = resolve(raw, experiment_schema(task_cls), str(path), overrides)
    config: dict[str, Any] = {"task": task_name, **sections}
    check_engine(config, str(path))
    task = task_cls(config)
    if check_task:
        task.check()
    return task, config


def check_engine(config: dict[str, Any], source: str) -> None:
    """Range checks that types alone do not catch."""
    positive = [
        ("data", "batch_size"),
        ("optim", "accum_steps"),
        ("schedule", "epochs"),
        ("eval", "every"),
        ("run", "log_every"),
    ]
    for section, key in positive:
        if config[section][key] < 1:
            raise ConfigError(f"{source}: {section}.{key} must be >= 1, got {config[section][key]}")
    if config["data"]["workers"] < 0:
        raise ConfigError(f"{source}: data.workers must be >= 0")
    if not 0 < config["ema"]["decay"] < 1:
        raise ConfigError(f"{source}: ema.decay must be in (0, 1), got {config['ema']['decay']}")
    if config["optim"]["lr"] <= 0:
        raise ConfigError(f"{source}: optim.lr must be > 0, got {config['optim']['lr']}")
    resume = config["run"]["resume"]
    if isinstance(resume, str) and not os.path.isfile(resume):
        raise ConfigError(f"{source}: run.resume: checkpoint {resume} does not exist")
