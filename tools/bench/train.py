"""Training-step time and peak memory, each model in a fresh process.

Memory method (the same for every model, so ratios are fair):
- CUDA: `torch.cuda.max_memory_allocated` over the timed steps, its peak reset after the warm-up
  step: weights + gradients + momentum + activations + workspaces, without cuDNN's one-off
  algorithm search (cudnn.benchmark is on, as in the forward timing).
- CPU: the process's peak resident set size (Linux VmHWM) minus its resident size once torch,
  torchvision, our package (and timm for timm models) are imported. Before the model is built the
  peak counter is reset (writing 5 to /proc/self/clear_refs), so import-time spikes do not count.
  The figure therefore holds the same parts as on CUDA plus allocator slack; a fresh process per
  model keeps one model's freed-but-cached memory out of the next one's number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch

from selecsls.tools.bench.timing import measure_train_steps, summarize

_RESULT_TAG = "BENCH_TRAIN_RESULT "


def _status_kb(field: str) -> int | None:
    """A `Vm*` field of /proc/self/status in kB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_child(
    name: str,
    batch: int,
    size: int,
    reps: int,
    warmup: int,
    device: str,
    amp: str = "fp32",
    compile: bool = False,
) -> dict:
    """Body of the child process: build one model, time its steps, measure its peak memory."""
    import torchvision.models  # noqa: F401  (imported before the baseline, like timm below)

    from selecsls.tools.bench.models import resolve_model

    dev = torch.device(device)
    entry = resolve_model(name)  # imports timm for timm models
    after_warmup = None
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as in the forward timing
        # Reset the peak after the warm-up step(s): weights, gradients and momentum stay counted
        # (they are live then), cuDNN's one-off algorithm-search workspaces do not.
        after_warmup = partial(torch.cuda.reset_peak_memory_stats, dev)
        method = "torch.cuda.max_memory_allocated after warm-up"
    else:
        reset = _reset_peak_rss()
        base_kb = _status_kb("VmRSS") or 0
        method = "peak RSS (VmHWM) - RSS after imports" + ("" if reset else " (peak not reset)")
    model = entry.build().to(dev)
    model_kb = (_status_kb("VmRSS") or 0) - base_kb if dev.type == "cpu" else None
    times = measure_train_steps(model, batch, size, reps, warmup, dev, after_warmup, amp, compile)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20
        model_mb = None
    else:
        peak_mb = ((_status_kb("VmHWM") or 0) - base_kb) / 1024
        model_mb = model_kb / 1024
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": entry.label,
        "batch": batch,
        "size": size,
        "amp": amp,
        "compile": compile,
        "times_ms": times,
        **summarize(times),
        "images_per_s": 1e3 * batch / summarize(times)["median_ms"],
        "peak_mb": peak_mb,
        "model_mb": model_mb,
        "params_m": params / 1e6,
        "memory_method": method,
    }


def child_main(args) -> int:
    """Entry point of `--_train-child NAME`: print one tagged JSON line on stdout."""
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_child(
        args._train_child,
        args.train_batch,
        args.train_size,
        args.reps,
        args.warmup,
        args.device,
        args.train_amp,
        args.train_compile,
    )
    print(_RESULT_TAG + json.dumps(result), flush=True)
    return 0


def train_in_subprocess(name: str, args) -> dict:
    """Run the child for model `name` and return its result, or {"model", "error"} on failure."""
    cmd = [sys.executable, "-m", "selecsls.tools.benchmark", "--_train-child", name]
    cmd += ["--train-batch", str(args.train_batch), "--train-size", str(args.train_size)]
    cmd += ["--reps", str(args.reps), "--warmup", str(args.warmup), "--device", args.device]
    cmd += ["--train-amp", args.train_amp] + (["--train-compile"] if args.train_compile else [])
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"model": name, "error": f"exit {proc.returncode}: {tail}"}


def measure_training(names: list[str], args, progress) -> list[dict]:
    """One fresh process per model (and per round); times of all rounds are pooled, the peak
    memory is the largest seen. Rounds alternate the models so drift hits them alike."""
    pooled: dict[str, dict] = {}
    for round_index in range(args.train_rounds):
        for name in names:
            progress.show(f"train {name} (round {round_index + 1}/{args.train_rounds})")
            result = train_in_subprocess(name, args)
            progress.show(f"train {name} done", advance=1)
            if "error" in result:
                pooled.setdefault(name, result)
                continue
            if name not in pooled or "error" in pooled[name]:
                pooled[name] = result
                continue
            kept = pooled[name]
            kept["times_ms"] += result["times_ms"]
            kept.update(summarize(kept["times_ms"]))
            kept["images_per_s"] = 1e3 * kept["batch"] / kept["median_ms"]
            kept["peak_mb"] = max(kept["peak_mb"], result["peak_mb"])
    return [pooled[name] for name in names]
