"""The training loop shared by every task: one process, or one per device under torchrun.

Per epoch: train (AMP, channels_last, gradient accumulation and clipping, EMA), evaluate the
model (and its EMA), write summary.csv / TensorBoard, save last.pt (and best.pt) atomically.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import checkpointing as ckpt
from .amp import AMP_DTYPES, resolve_amp, slow_amp_note
from .config import dump_config
from .distributed import DistInfo, ShardedSampler, barrier, gather_objects, init_distributed
from .ema import ModelEma
from .logs import RunLog
from .optim import build_optimizer, build_scheduler
from .precise_bn import recalibrate_bn
from .tasks import Task
from .tasks.base import EvalContext


def setup_process(config: dict[str, Any]) -> DistInfo:
    """Threads, determinism, process group and seeds (seed + rank: ranks augment differently)."""
    run = config["run"]
    if run["threads"]:
        torch.set_num_threads(run["threads"])
    if run["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    info = init_distributed(run["device"], run["dist_backend"])
    seed = run["seed"] + info.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return info


class Trainer:
    """Builds everything from (task, config) and runs `fit()`; see the module docstring."""

    def __init__(self, task: Task, config: dict[str, Any]) -> None:
        self.task, self.config = task, config
        run = config["run"]
        self.info = info = setup_process(config)
        self.out_dir = Path(run["out_dir"])
        self.log = RunLog(self.out_dir, info.is_main, run["progress"])
        if info.is_main:
            task.prepare_data()
            dump_config(config, self.out_dir / "config.yaml")
        barrier(info)
        self.amp = resolve_amp(run["amp"], info.device)
        self.amp_dtype = AMP_DTYPES[self.amp]
        note = slow_amp_note(self.amp, info.device)
        if note:
            self.log.print(f"warning: {note}")
        elif run["amp"] == "auto":
            self.log.print(f"run.amp=auto: {self.amp} on {info.device.type}")
        self.channels_last = run["channels_last"]
        self._build_data()
        self._build_model()
        self.start_epoch, self.best = 0, None
        self._maybe_resume()
        if self.start_epoch == 0 and info.is_main:
            self._drop_earlier_summary()

    def _build_data(self) -> None:
        cfg, info, task = self.config, self.info, self.task
        train_set, val_set = task.build_datasets()
        data, seed = cfg["data"], cfg["run"]["seed"]
        self.train_sampler = ShardedSampler(len(train_set), info, shuffle=True, seed=seed)
        val_sampler = ShardedSampler(len(val_set), info, shuffle=False, pad=False)
        # Workers are not persistent: each epoch's workers are seeded from the main RNG, which
        # checkpoints restore, so a resumed run sees the same augmentations.
        common = {
            "num_workers": data["workers"],
            "collate_fn": task.collate,
            "pin_memory": info.device.type == "cuda",
        }
        self.train_loader = DataLoader(
            train_set, data["batch_size"], sampler=self.train_sampler, drop_last=True, **common
        )
        self.val_loader = DataLoader(
            val_set,
            data["eval_batch_size"] or 2 * data["batch_size"],
            sampler=val_sampler,
            **common,
        )
        accum = cfg["optim"]["accum_steps"]
        batches = len(self.train_loader)
        if cfg["run"]["max_steps_per_epoch"]:
            batches = min(batches, cfg["run"]["max_steps_per_epoch"] * accum)
        if batches < accum:
            raise ValueError(
                f"an epoch has {batches} batches, fewer than optim.accum_steps={accum}: lower "
                "data.batch_size or optim.accum_steps"
            )
        self.steps_per_epoch = batches // accum
        self.batches_per_epoch = self.steps_per_epoch * accum
        self.log.print(
            f"data: {len(train_set)} train / {len(val_set)} val images, "
            f"{self.steps_per_epoch} steps per epoch x {info.world_size} process(es)"
        )

    def _build_model(self) -> None:
        cfg, info = self.config, self.info
        model = self.task.build_model().to(info.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = None
        if cfg["ema"]["enabled"]:
            self.ema = ModelEma(model, cfg["ema"]["decay"], cfg["ema"]["warmup"])
        self.optimizer = build_optimizer(model, cfg["optim"])
        self.scheduler = build_scheduler(self.optimizer, cfg["schedule"], self.steps_per_epoch)
        fp16 = self.amp == "fp16"
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=fp16)
        train_model: torch.nn.Module = model
        if info.enabled:
            ids = [info.device.index] if info.device.type == "cuda" else None
            train_model = DistributedDataParallel(model, device_ids=ids)
        if cfg["run"]["compile"]:
            train_model = torch.compile(train_model)
        self.train_model = train_model

    def _maybe_resume(self) -> None:
        resume = self.config["run"]["resume"]
        if resume is False:
            return
        path = self.out_dir / "last.pt" if resume is True else Path(resume)
        if not path.is_file():
            self.log.print(f"run.resume: {path} does not exist yet, starting from scratch")
            return
        obj, _ = ckpt.read_train_state(path)
        planned = _schedule_plan(self.scheduler)
        self.start_epoch, self.best = ckpt.restore(
            obj,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.ema,
            self.info.rank,
            self.info.world_size,
        )
        if self.info.is_main:
            trim_summary(self.out_dir / "summary.csv", self.start_epoch)
        self.log.print(f"resumed from {path} after epoch {self.start_epoch}")
        self._keep_configured_schedule(planned)

    def _keep_configured_schedule(self, planned: dict) -> None:
        """The learning-rate schedule the config asks for, not the checkpoint's.

        LambdaLR's state carries its factor's settings (total steps, warmup, ...) and the base
        learning rates, so a run resumed with a longer schedule.epochs (training on) or another
        optim.lr would silently keep the old schedule. The config wins; the step count (where
        the run is) stays, and the learning rate moves to the new schedule's value there."""
        restored = _schedule_plan(self.scheduler)
        if restored == planned:
            return  # the usual resume: nothing changed, bit for bit
        scheduler = self.scheduler
        scheduler.lr_lambdas[0].__dict__.update(planned["factor"])
        scheduler.base_lrs = list(planned["base_lrs"])
        step = scheduler.last_epoch
        before = [group["lr"] for group in self.optimizer.param_groups]
        for group, base in zip(self.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * scheduler.lr_lambdas[0](step)
            group["initial_lr"] = base
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        total = planned["factor"].get("total"), restored["factor"].get("total")
        self.log.print(
            f"run.resume: the config's schedule differs from the checkpoint's (total steps "
            f"{total[1]} -> {total[0]}, base lr {restored['base_lrs'][0]:g} -> "
            f"{planned['base_lrs'][0]:g}); continuing on the config's: lr at step {step} "
            f"{before[0]:.4g} -> {self.optimizer.param_groups[0]['lr']:.4g}"
        )

    def _drop_earlier_summary(self) -> None:
        """A fresh run into an out_dir that holds an earlier run's summary.csv starts its own:
        appended rows would mix two runs (its checkpoints are replaced as they are written)."""
        path = self.out_dir / "summary.csv"
        if path.is_file():
            path.unlink()
            self.log.print(f"{path}: an earlier run's, replaced (run.resume=true continues one)")

    def fit(self) -> dict[str, float]:
        """Train schedule.epochs epochs (from the resumed one); returns the last metrics."""
        epochs, metrics = self.config["schedule"]["epochs"], {}
        for epoch in range(self.start_epoch, epochs):
            start = time.perf_counter()
            train_stats = self.train_epoch(epoch)
            every, evaluated = self.config["eval"]["every"], {}
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                metrics = evaluated = self.evaluate(epoch)
            # only this epoch's own metrics: the last evaluation's would repeat in the epoch line
            # and in summary.csv as if measured again
            self.end_epoch(epoch, train_stats, evaluated, time.perf_counter() - start)
        barrier(self.info)
        self.log.close()
        return metrics

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this rank's shard; returns mean losses, lr and images/s (this rank)."""
        task, accum = self.task, self.config["optim"]["accum_steps"]
        clip = self.config["optim"]["clip_grad_norm"]
        self.train_sampler.set_epoch(epoch)
        self.train_model.train()
        sums: dict[str, torch.Tensor] = {}
        images, used, start = 0, 0, time.perf_counter()  # used: batches whose losses count
        bar = self.log.bar(self.steps_per_epoch, f"epoch {epoch + 1}")
        for i, batch in enumerate(self.train_loader):
            if i >= self.batches_per_epoch:
                break
            if i == 0 and epoch == self.start_epoch:
                self._preview_inputs(batch, epoch)
            batch, weight = self._usable_batch(batch)
            if batch is None:
                continue  # the batch's files were (nearly) all unreadable, already warned about
            last = (i + 1) % accum == 0
            sync = nullcontext() if last or not self.info.enabled else self.train_model.no_sync()
            with sync:
                with torch.autocast(
                    self.info.device.type,
                    dtype=self.amp_dtype or torch.float32,
                    enabled=self.amp_dtype is not None,
                ):
                    losses = task.losses(self.train_model, batch)
                self.scaler.scale(losses["loss"] * weight / accum).backward()
            if weight:
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value.detach().float()
                images += task.batch_size(batch)
                used += 1
            if last:
                self._step(clip)
                bar.update(1)
                step = epoch * self.steps_per_epoch + (i + 1) // accum
                if step % self.config["run"]["log_every"] == 0:
                    self._log_step(bar, sums, max(used, 1), images, start, step)
        bar.close()
        stats = {f"train_{k}": float(v) / max(used, 1) for k, v in sums.items()}
        stats["lr"] = self.optimizer.param_groups[0]["lr"]
        stats["train_img_per_s"] = images * self.info.world_size / (time.perf_counter() - start)
        return stats

    def _usable_batch(self, host_batch: Any) -> tuple[Any, float]:
        """(device batch, loss weight) to train on, or (None, 0) to skip it.

        A batch whose files were all unreadable is empty (or, with some unreadable, smaller than
        the task's min_batch_size). One process skips it. Under DDP every
        rank must still run a backward (they meet in the gradient all-reduce), and an empty
        batch's loss is NaN (a mean over nothing) and spoils the logged losses, so the rank
        repeats its previous batch (kept on the host; the first readable file if there is none)
        with loss weight 0: zero gradients from it, its losses left out of the averages.
        """
        batch = self.task.to_device(host_batch, self.info.device, True, self.channels_last)
        if self.task.batch_size(batch) >= self.task.min_batch_size:
            self._last_host_batch = host_batch if self.info.enabled else None
            return batch, 1.0
        if not self.info.enabled:
            return None, 0.0
        if getattr(self, "_last_host_batch", None) is None:  # the rank's first batch
            self._last_host_batch = self._spare_batch()
        previous = self.task.to_device(
            self._last_host_batch, self.info.device, True, self.channels_last
        )
        return previous, 0.0

    def _spare_batch(self) -> Any:
        """A batch of min_batch_size of the first training files that read (datasets give None
        for an unreadable file; a single readable one is repeated); a clear error when none do."""
        dataset, collate = self.train_loader.dataset, self.train_loader.collate_fn
        items = []
        for index in range(len(dataset)):
            item = dataset[index]
            if item is not None:
                items.append(item)
            if len(items) == self.task.min_batch_size:
                break
        if not items:
            raise RuntimeError("no training file could be read (see the warnings above)")
        size = self.task.min_batch_size
        return collate((items * size)[:size])

    def _preview_inputs(self, batch: Any, epoch: int) -> None:
        """The first run.preview_images training inputs (0: none) into TensorBoard (rank 0)."""
        count = self.config["run"]["preview_images"]
        if count > 0 and self.log.writer is not None:
            images = self.task.preview_images(batch)  # tasks draw at most 8
            self.log.images("train/inputs", None if images is None else images[:count], epoch)

    def _step(self, clip: float | None) -> None:
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)

    def _log_step(self, bar, sums, batches: int, images: int, start: float, step: int) -> None:
        values = {k: float(v) / batches for k, v in sums.items()}
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        values["img_per_s"] = images * self.info.world_size / (time.perf_counter() - start)
        bar.set_postfix(
            loss=f"{values['loss']:.3f}",
            lr=f"{values['lr']:.2e}",
            img_s=f"{values['img_per_s']:.0f}",
        )
        self.log.scalars("train", values, step)

    def evaluate(self, epoch: int) -> dict[str, float]:
        """The task's metrics for the model and (prefixed ema_) its EMA, reduced over ranks."""
        args = (self.info, self.amp_dtype, self.channels_last)
        batches = self.config["eval"]["bn_recalibrate"]
        if batches:
            for model in (self.model, self.ema.module if self.ema else None):
                if model is not None:
                    recalibrate_bn(model, self.train_loader, self.task, batches, *args)
        # step epoch + 1 like the "val" scalars below; the writer is None off rank 0
        ctx = EvalContext(epoch + 1, "val", self.log.writer, self.log.progress)
        metrics = self.task.evaluate(self.model, self.val_loader, *args, ctx)
        if self.ema is not None:
            ema_ctx = replace(ctx, tag="val_ema")
            ema_metrics = self.task.evaluate(self.ema.module, self.val_loader, *args, ema_ctx)
            metrics.update({f"ema_{k}": v for k, v in ema_metrics.items()})
        self.log.scalars("val", metrics, epoch + 1)
        if self.log.writer is not None:  # previews and metrics visible now, not ~2 min later
            self.log.writer.flush()
        return metrics

    def end_epoch(self, epoch: int, stats: dict, metrics: dict, seconds: float) -> None:
        """Pick best, save checkpoints (rank 0), print and log the epoch."""
        key = self.task.best_metric
        value = metrics.get(key)
        improved = value is not None and (
            self.best is None
            or (value > self.best if self.task.best_mode == "max" else value < self.best)
        )
        if improved:
            self.best = value
        # Write order for a run killed at any point (run.resume=true continues from last.pt):
        # the summary row first (resume trims rows past last.pt's epoch), then best.pt /
        # epoch_N.pt, and last.pt last, so every file last.pt accounts for is already complete.
        row = {
            "epoch": epoch + 1,
            **stats,
            **{f"val_{k}": v for k, v in metrics.items()},
            "best_" + key: self.best,
            "epoch_seconds": seconds,
        }
        self.log.scalars("train_epoch", stats, epoch + 1)
        self.log.summary_row(row)
        rngs = gather_objects(ckpt.rng_state(), self.info)
        if self.info.is_main:
            targets = [self.out_dir / "best.pt"] if improved else []
            if self.config["run"]["keep_epochs"]:
                targets.append(self.out_dir / f"epoch_{epoch + 1}.pt")
            targets.append(self.out_dir / "last.pt")
            first = ckpt.save_checkpoint(
                targets[0],
                self.model,
                experiment=self.config,
                epoch=epoch + 1,
                best=self.best,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                ema=self.ema,
                rng_states=rngs,
                metrics=metrics,
                extra=self.task.checkpoint_extra(),
            )
            for path in targets[1:]:
                copy_atomic(first, path)
        parts = [f"train loss {stats.get('train_loss', math.nan):.4f}"]
        parts += [f"{k} {v:.4g}" for k, v in metrics.items() if k in (key, "loss", "ema_" + key)]
        parts.append(f"{seconds:.0f} s{' (best)' if improved else ''}")
        self.log.print(f"epoch {epoch + 1}: " + ", ".join(parts))
        barrier(self.info)


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy through a temporary file and rename, so dst is always a complete file."""
    tmp = dst.with_name(f".{dst.name}.copy.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _schedule_plan(scheduler) -> dict:
    """What a LambdaLR schedule is (its factor's settings and base lrs), not where it is."""
    return {"factor": dict(vars(scheduler.lr_lambdas[0])), "base_lrs": list(scheduler.base_lrs)}


def trim_summary(path: Path, epochs_done: int) -> None:
    """Drop summary.csv rows past the resumed epoch (written before an interrupted save)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= epochs_done]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
