"""Forward-pass timing and training memory of SelecSLS models and baselines.

    python -m selecsls.tools.benchmark --models selecsls60 resnet50 --modes eager bf16 \
        --sizes 224 512 --batches 1 16 --reps 5 --json out.json
    python -m selecsls.tools.benchmark --models selecsls60 resnet50 --train --train-only

Prints markdown tables in the seed's layout (rows model/mode, columns size x batch, ms per
forward pass) plus speed-ups against `--baseline`; progress goes to stderr. Methodology: warm-up
calls (torch.compile compiles there), device synchronisation around every timed call, `--reps`
repetitions with the models interleaved round-robin, median (or `--stat min`) and interquartile
range, and a note when the spread shows the machine's speed changed mid-run. Training is
measured one model per fresh process (see bench_train for the memory method).
"""

from __future__ import annotations

import argparse
import sys

import torch

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.tools.engine.amp import cpu_has_bf16

from .bench_models import (
    BF16_MODES,
    MODES,
    BenchmarkError,
    OptionalMissing,
    fold_bn,
    prepare,
    resolve_model,
)
from .bench_report import (
    STATS,
    fastest_table,
    forward_records,
    forward_tables,
    machine_info,
    spread_note,
    train_table,
    write_json,
)
from .bench_timing import Case, Progress, measure_forward
from .bench_train import child_main, measure_training


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m selecsls.tools.benchmark",
        description="Time forward passes (and optionally a training step) of SelecSLS models "
        "and baselines; print markdown tables and optionally write JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["selecsls60", "resnet50"],
        help="SelecSLS configs, baselines (resnet50, timm:vovnet39a, timm:selecsls60, "
        "...), published weight names or checkpoint paths",
    )
    mode_help = "; ".join(f"{k}: {v}" for k, v in MODES.items())
    p.add_argument(
        "--modes",
        nargs="+",
        default=["eager"],
        choices=list(MODES),
        metavar="MODE",
        help=f"one or more of: {mode_help}",
    )
    p.add_argument(
        "--sizes", nargs="+", type=_positive, default=[224, 400, 512], help="square inputs"
    )
    p.add_argument("--batches", nargs="+", type=_positive, default=[1, 16], help="batch sizes")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--reps", type=_positive, default=5, help="timed repetitions per cell")
    p.add_argument("--warmup", type=_nonnegative, default=2, help="untimed calls per cell")
    p.add_argument("--threads", type=_positive, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--baseline",
        default="resnet50",
        help="model (or model/mode) the ratios compare against; must be benchmarked",
    )
    p.add_argument(
        "--stat",
        choices=list(STATS),
        default="median",
        help="statistic of the repetitions that the tables and speed-ups use; min reads the "
        "undisturbed repetitions on a machine whose speed comes and goes",
    )
    p.add_argument("--json", metavar="PATH", help="also write every timing to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument(
        "--train",
        action="store_true",
        help="also measure one SGD training step: time and peak memory",
    )
    p.add_argument("--train-only", action="store_true", help="--train without forward timing")
    p.add_argument("--train-batch", type=_positive, default=32, help="training batch size")
    p.add_argument("--train-size", type=_positive, default=224, help="training input size")
    p.add_argument(
        "--train-amp",
        choices=["fp32", "bf16"],
        default="fp32",
        help="training precision: fp32 NCHW, or bf16 autocast + channels_last (the fast path)",
    )
    p.add_argument(
        "--train-rounds",
        type=_positive,
        default=1,
        help="fresh processes per model, alternating models; timings are pooled",
    )
    p.add_argument("--_train-child", help=argparse.SUPPRESS)
    return p


def _positive(text: str) -> int:
    value = _nonnegative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args._train_child:
            return child_main(args)
        payload = run(args)
        if args.json:
            write_json(args.json, payload)
            print(f"wrote {args.json}")
    except (BenchmarkError, CheckpointError) as err:
        print(f"benchmark: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbenchmark: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
