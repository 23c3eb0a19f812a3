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

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.tools.bench.models import (
    MODES,
    BenchmarkError,
)
from selecsls.tools.bench.report import (
    STATS,
    write_json,
)
from selecsls.tools.bench.suite import run
from selecsls.tools.bench.train import child_main


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
        "--sizes",
        nargs="+",
        type=_size,
        default=[224, 400, 512],
        help="inputs: S (square) or WxH (e.g. 512x320, the demo's)",
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
        "--train-compile",
        action="store_true",
        help="training: torch.compile the model (the engine's run.compile; compiled in warm-up)",
    )
    p.add_argument(
        "--train-rounds",
        type=_positive,
        default=1,
        help="fresh processes per model, alternating models; timings are pooled",
    )
    p.add_argument("--_train-child", help=argparse.SUPPRESS)
    return p


def _size(text: str) -> int | str:
    """S -> S; WxH -> "WxH" (S for a square, so 224x224 and 224 are one column)."""
    if "x" not in text:
        return _positive(text)
    parts = text.split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"a size is S or WxH, got {text}")
    width, height = (_positive(part) for part in parts)
    return width if width == height else f"{width}x{height}"


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
