"""The whole run of `python -m selecsls.tools.benchmark`: resolve the models, build one timing case
per (model, mode), time them interleaved, print the tables (`run`, `print_tables`)."""

from __future__ import annotations

import argparse

import torch

from selecsls.tools.bench.models import (
    BF16_MODES,
    BenchmarkError,
    OptionalMissing,
    fold_bn,
    prepare,
    resolve_model,
)
from selecsls.tools.bench.report import (
    fastest_table,
    forward_records,
    forward_tables,
    machine_info,
    spread_note,
    train_table,
)
from selecsls.tools.bench.timing import Case, Progress, measure_forward
from selecsls.tools.bench.train import measure_training
from selecsls.tools.engine.amp import cpu_has_bf16


def check_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchmarkError(f"bad device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda asked for, but torch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise BenchmarkError(f"unsupported device {name!r}; use cpu or cuda")
    return device


def resolve_all(names: list[str], notes: list[str]) -> list:
    """Resolve every name up front (so typos fail before any work); skip optional ones."""
    entries = []
    for name in dict.fromkeys(names):
        try:
            entries.append(resolve_model(name))
        except OptionalMissing as err:
            notes.append(f"skipped {err}")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise BenchmarkError(f"two models share a table label: {labels}")
    return entries


def build_cases(entries, modes: list[str], device: torch.device, progress: Progress) -> list[Case]:
    """Build each model once, fold its BN at most once, and prepare every requested mode."""
    cases = []
    for entry in entries:
        progress.show(f"building {entry.label}")
        model = entry.build().eval()
        folded = fold_bn(model) if set(modes) - {"eager"} else None
        for mode in modes:
            ready = prepare(model, mode, device, folded)
            cases.append(Case(f"{entry.label}/{mode}", ready.runner, ready.channels_last))
    return cases


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed arguments; print tables, return the JSON payload."""
    device = check_device(args.device)
    if device.type == "cuda":
        # Let cuDNN pick its fastest algorithm per shape; the warm-up calls absorb the search.
        torch.backends.cudnn.benchmark = True
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, device)
    finally:  # callers in the same process (tests) keep their thread count
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device) -> dict:
    notes: list[str] = []
    entries = resolve_all(args.models, notes)
    slow = slow_bf16_modes(args, device)
    if slow:
        notes.append(
            f"this CPU has no native bf16 (AVX-512 BF16 / AMX): {', '.join(slow)} run through "
            "slow fallback kernels here; deploy (fp32) and int8 are its fast modes"
        )
    labels = [e.label for e in entries]
    baseline = args.baseline if args.baseline.partition("/")[0] in labels else None
    if baseline is None and args.baseline != "resnet50":
        raise BenchmarkError(f"--baseline {args.baseline} is not among the models {labels}")
    base_mode = args.baseline.partition("/")[2]
    if base_mode and base_mode not in args.modes and not args.train_only:
        raise BenchmarkError(f"--baseline {args.baseline}: mode {base_mode} is not in --modes")
    if "compile" in args.modes and args.warmup < 1:
        raise BenchmarkError("mode compile needs --warmup >= 1 (compilation happens there)")
    payload = {"machine": machine_info(device), "baseline": baseline, "notes": notes}
    forward = not args.train_only
    steps = (len(args.sizes) * len(args.batches) * args.reps if forward else 0) + (
        len(entries) * args.train_rounds if args.train or args.train_only else 0
    )
    progress = Progress(steps, args.quiet)
    if forward and entries:
        _raise_recompile_limit(len(args.sizes) * len(args.batches))
        cases = build_cases(entries, args.modes, device, progress)
        measure_forward(cases, args.sizes, args.batches, args.reps, args.warmup, device, progress)
        payload["forward"] = forward_records(cases, args.sizes, args.batches)
        if note := spread_note(payload["forward"]):
            notes.append(note)
    if (args.train or args.train_only) and entries:
        payload["train"] = measure_training([e.label for e in entries], args, progress)
    progress.close()
    payload["machine"]["load_average_end"] = machine_info(device)["load_average"]
    print_tables(payload, args)
    return payload


def slow_bf16_modes(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The requested modes (and bf16 training) that compute in bf16 on a CPU without it."""
    if device.type != "cpu" or cpu_has_bf16():
        return []
    modes = [] if args.train_only else [m for m in args.modes if m in BF16_MODES]
    if (args.train or args.train_only) and args.train_amp == "bf16":
        modes.append("--train-amp bf16")
    return modes


def print_tables(payload: dict, args: argparse.Namespace) -> None:
    m = payload["machine"]
    print(
        f"device: {m.get('gpu') or m['cpu']}, torch {m['torch']}, {m['threads']} threads, "
        f"load average {_load(m['load_average'])} -> {_load(m['load_average_end'])}\n"
    )
    if "forward" in payload:
        recs = payload["forward"]
        base = payload["baseline"]
        print(forward_tables(recs, args.sizes, args.batches, base, args.stat) + "\n")
        if len(args.modes) > 1:
            print(fastest_table(recs, args.sizes, args.batches, base, args.stat) + "\n")
    if "train" in payload:
        print(train_table(payload["train"], payload["baseline"]) + "\n")
    for note in payload["notes"]:
        print(f"note: {note}")


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values[:1]) if values else "?"


def _raise_recompile_limit(shapes: int) -> None:
    """torch.compile keeps one graph per input shape; allow one per (size, batch) cell."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), shapes + 2))
