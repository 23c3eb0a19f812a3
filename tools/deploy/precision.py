"""Which precision runs a network fastest on this CPU, by measuring it: the demo's `--precision
auto` and `python -m selecsls.tools.bench.cpu_bound`.

The fastest precision is not a property of the instruction set alone. On an AMX Xeon int8 ran
1.7-2.1x faster than bf16 (docs/benchmarks.md); on an AVX2-only EPYC it gained 2-5% over fp32 and
bf16 ran through fallback kernels 8x slower; on a Zen 4 EPYC (AVX-512 BF16 and VNNI) int8 gained
1.8x over bf16. So `auto` times each candidate on the model at its input size once, and caches
the winner per CPU, torch version, thread count, model structure and input size in
`$SELECSLS_CACHE_DIR/precision.json` (default ~/.cache/selecsls): later runs start at once.

Candidates on the CPU: fp32 always; bf16 where the CPU computes it natively (AVX-512 BF16 /
AMX: elsewhere it is known to be slow and is not worth the probe); int8 where torch has FX
quantization. int8 speed does not depend on the calibration, so the probe quantizes on one
random image and throws that copy away; the chosen int8 mode calibrates on real frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from selecsls.tools.engine.amp import cpu_has_bf16

CPU_PRECISIONS = ("fp32", "bf16", "int8")
CACHE_FILE = "precision.json"


def cache_dir() -> Path:
    """Where measured choices are kept: $SELECSLS_CACHE_DIR, else $XDG_CACHE_HOME/selecsls,
    else ~/.cache/selecsls."""
    if os.environ.get("SELECSLS_CACHE_DIR"):
        return Path(os.environ["SELECSLS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "selecsls"


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def int8_available() -> bool:
    """True where torch has FX quantization and the x86 quantized engine (quantize.py)."""
    from selecsls.tools.deploy.quantize import Int8Error, _fx_quantization

    try:
        _fx_quantization()
    except Int8Error:
        return False
    return True


def cpu_candidates() -> list[str]:
    """The precisions worth timing on this CPU, in CPU_PRECISIONS order."""
    chosen = ["fp32"]
    if cpu_has_bf16():
        chosen.append("bf16")
    if int8_available():
        chosen.append("int8")
    return chosen


def cpu_runner(model: nn.Module, precision: str, input_size: tuple[int, int]) -> Callable:
    """A callable (1, 3, H, W) float32 -> outputs running `model` on the CPU in `precision`
    (the demo's runners; int8 quantized on one random image, for timing only)."""
    from selecsls.tools.deploy.quantize import quantize_int8
    from selecsls.tools.realtime.runtime import TorchRunner

    if precision not in CPU_PRECISIONS:
        raise ValueError(f"unknown CPU precision {precision!r}; valid: {', '.join(CPU_PRECISIONS)}")
    if precision != "int8":
        return TorchRunner(model, "cpu", precision)
    width, height = input_size
    generator = torch.Generator().manual_seed(0)
    quantized = quantize_int8(model, [torch.randn(1, 3, height, width, generator=generator)])

    def run(images: torch.Tensor):
        with torch.inference_mode():
            return quantized(images.float().contiguous())

    return run


def time_runners(
    runners: dict[str, Callable], images: torch.Tensor, reps: int = 3, warmup: int = 1
) -> dict[str, list[float]]:
    """{name: [ms per call]}: `warmup` untimed calls each, then `reps` rounds that call every
    runner once in turn (so a machine whose speed drifts slows all of them alike)."""
    for runner in runners.values():
        for _ in range(warmup):
            runner(images)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(reps):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(images)
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def measure_precisions(
    model: nn.Module,
    input_size: tuple[int, int],
    candidates: Sequence[str] | None = None,
    reps: int = 3,
) -> dict[str, float]:
    """{precision: median ms per (1, 3, H, W) frame} of `model` on the CPU at `input_size`
    (W, H), every candidate (default: cpu_candidates()) timed in the same rounds."""
    candidates = list(candidates or cpu_candidates())
    runners = {p: cpu_runner(model, p, input_size) for p in candidates}
    images = torch.zeros(1, 3, int(input_size[1]), int(input_size[0]))
    times = time_runners(runners, images, reps)
    return {name: float(np.median(values)) for name, values in times.items()}


def cache_key(model: nn.Module, input_size: tuple[int, int]) -> str:
    """What a measured choice depends on: CPU, torch version, threads, input size and the
    model's structure (its config: backbone, width, heads, pruned widths)."""
    config = getattr(model, "config", None) or {"modules": str(model)}
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    size = f"{int(input_size[0])}x{int(input_size[1])}"
    parts = (cpu_name(), cpu_features(), f"torch {torch.__version__}")
    parts += (f"{torch.get_num_threads()} threads", size, digest[:12])
    return " | ".join(parts)


def cpu_features() -> str:
    """The CPU's kernel level as torch sees it (e.g. "AVX512 bf16 amx"): one model name can
    cover CPUs of several generations (a VM's "AMD EPYC" was Zen 1 one day, Zen 4 the next)."""
    try:
        level = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        level = "unknown"
    extras = [name for name, has in (("bf16", cpu_has_bf16()), ("amx", _has_amx())) if has]
    return " ".join([level, *extras])


def _has_amx() -> bool:
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def read_cache(path: Path) -> dict:
    """The cache file's entries; {} (with a note) when it is missing or unreadable."""
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"note: ignoring unreadable precision cache {path} ({err})", file=sys.stderr)
        return {}
    return entries if isinstance(entries, dict) else {}


def write_cache(path: Path, entries: dict) -> None:
    """Write the cache atomically (a temporary file renamed over it): never half a file. A
    cache that cannot be written costs a re-measurement next time, so it only gets a note."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError as err:
        print(f"note: could not write the precision cache {path} ({err})", file=sys.stderr)


def fastest_cpu_precision(
    model: nn.Module,
    input_size: tuple[int, int],
    measure: Callable[[nn.Module, tuple[int, int], list[str]], dict[str, float]] | None = None,
    cache: Path | None = None,
) -> tuple[str, dict[str, float], bool]:
    """(precision, {precision: ms}, from_cache): the fastest of cpu_candidates() for `model` at
    `input_size` (W, H) on this CPU, measured once and then read from the cache. `measure`
    (default measure_precisions) and `cache` (default cache_dir() / CACHE_FILE) are for tests."""
    candidates = cpu_candidates()
    if len(candidates) == 1:
        return candidates[0], {}, False
    path = cache or cache_dir() / CACHE_FILE
    key = cache_key(model, input_size)
    entries = read_cache(path)
    entry = entries.get(key)
    if isinstance(entry, dict) and entry.get("choice") in candidates:
        return entry["choice"], dict(entry.get("ms") or {}), True
    timings = (measure or measure_precisions)(model, input_size, candidates)
    choice = min(timings, key=timings.get)
    entries[key] = {"choice": choice, "ms": {k: round(v, 2) for k, v in timings.items()}}
    write_cache(path, entries)
    return choice, timings, False


def describe_choice(choice: str, timings: dict[str, float], from_cache: bool) -> str:
    """One line for the demo's start-up: what auto picked and why."""
    if not timings:
        return f"precision auto: {choice} (the only candidate on this CPU)"
    ordered = sorted(timings, key=lambda k: CPU_PRECISIONS.index(k) if k in CPU_PRECISIONS else 9)
    figures = ", ".join(f"{k} {timings[k]:.1f} ms" for k in ordered)
    where = f"cached in {cache_dir() / CACHE_FILE}" if from_cache else "measured now, cached"
    return f"precision auto: {choice}, the fastest on this CPU ({figures}; {where})"
