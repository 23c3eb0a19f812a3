"""Timing loops for `selecsls.tools.benchmark`: interleaved forward timing and the training step.

Every timed call is bracketed by a device synchronisation (CUDA kernels run asynchronously, so
without it we would time the launch, not the work). Models are interleaved round-robin within each
repetition, with the starting model rotated every repetition, so that load drift from the other
users of a shared machine hits every model alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds one call of `fn` takes, synchronised on both ends."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Median, quartiles, min and max of a list of timings (one timing gives q1 = q3 = it)."""
    if len(times_ms) > 1:
        q1, _, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    else:
        q1 = q3 = times_ms[0]
    return {
        "median_ms": statistics.median(times_ms),
        "q1_ms": q1,
        "q3_ms": q3,
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
    }


class Progress:
    """One status line on stderr: rewritten in place on a terminal, one line per step otherwise
    (so that logs stay readable)."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def show(self, text: str, advance: int = 0, detail: bool = False) -> None:
        """Report `text`; `detail` lines (one per model per cell) appear on terminals only."""
        self.done += advance
        if self.quiet or (detail and not self.tty):
            return
        elapsed = time.perf_counter() - self.start
        line = f"[{self.done}/{self.total} {elapsed:6.0f}s] {text}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


@dataclass
class Case:
    """One row of the table: a label like "selecsls60/bf16" and its prepared runner."""

    label: str
    runner: Callable
    channels_last: bool
    times: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    errors: dict[tuple[int, int], str] = field(default_factory=dict)


def _warm_up(case: Case, images: torch.Tensor, warmup: int, key: tuple) -> bool:
    """Run the warm-up calls (compilation happens here); record an error and return False on a
    failure such as running out of memory, so one shape cannot sink the whole run."""
    try:
        for _ in range(warmup):
            case.runner(images)
    except (RuntimeError, ValueError) as err:
        case.errors[key] = "OOM" if "out of memory" in str(err).lower() else type(err).__name__
        if images.is_cuda:
            torch.cuda.empty_cache()
        return False
    return True


def input_hw(size: int | str) -> tuple[int, int]:
    """A forward benchmark's input size, S (square) or "WxH" as `--sizes` gives it -> (H, W)."""
    if isinstance(size, int):
        return size, size
    width, height = (int(value) for value in size.split("x"))
    return height, width


def size_label(size: int | str) -> str:
    """ "WxH" for the tables: 224 -> "224x224", "512x320" unchanged."""
    height, width = input_hw(size)
    return f"{width}x{height}"


def measure_forward(
    cases: list[Case],
    sizes: list[int],
    batches: list[int],
    reps: int,
    warmup: int,
    device: torch.device,
    progress: Progress,
) -> None:
    """Fill `case.times[(size, batch)]` with `reps` forward timings (ms) for every case."""
    gen = torch.Generator().manual_seed(0)
    for size in sizes:
        for batch in batches:
            key = (size, batch)
            images = torch.randn(batch, 3, *input_hw(size), generator=gen).to(device)
            inputs = {False: images, True: images.contiguous(memory_format=torch.channels_last)}
            with torch.inference_mode():
                live = []
                for case in cases:
                    progress.show(f"{size_label(size)} b{batch}: warm-up {case.label}", detail=True)
                    if _warm_up(case, inputs[case.channels_last], warmup, key):
                        live.append(case)
                        case.times[key] = []
                for rep in range(reps):
                    shift = rep % max(len(live), 1)
                    for case in live[shift:] + live[:shift]:
                        x = inputs[case.channels_last]
                        case.times[key].append(time_call(lambda c=case, x=x: c.runner(x), device))
                    progress.show(f"{size_label(size)} b{batch}: rep {rep + 1}/{reps}", advance=1)
            del images, inputs


def training_loss(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the logits (fixed labels), or the sum of output means for models without
    logits; either way every parameter that produced the output gets a gradient."""
    if isinstance(out, dict):
        if "logits" not in out:
            return sum(t.float().mean() for t in out.values())
        out = out["logits"]
    labels = torch.arange(out.shape[0], device=out.device) % out.shape[1]
    return torch.nn.functional.cross_entropy(out.float(), labels)


def measure_train_steps(
    model: torch.nn.Module,
    batch: int,
    size: int,
    reps: int,
    warmup: int,
    device: torch.device,
    after_warmup: Callable[[], None] | None = None,
    amp: str = "fp32",
    compile: bool = False,
) -> list[float]:
    """Time `reps` SGD steps (forward + backward + momentum update) in train mode: fp32 NCHW, or
    with amp="bf16" the engine's fast path (channels_last + bf16 autocast, fp32 weights);
    compile=True runs the model torch.compile'd, as the engine's `run.compile` does (compiled
    during the warm-up steps). `after_warmup` runs between the warm-up and the timed steps (e.g.
    to reset a peak counter)."""
    if amp not in ("fp32", "bf16"):
        raise ValueError(f"training amp must be fp32 or bf16, got {amp!r}")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    if amp == "bf16":
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    forward = torch.compile(model) if compile else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = training_loss(forward(images))
        loss.backward()
        optimizer.step()

    for _ in range(max(warmup, 1)):  # the first step allocates gradients and momentum buffers
        step()
    if after_warmup is not None:
        after_warmup()
    return [time_call(step, device) for _ in range(reps)]
