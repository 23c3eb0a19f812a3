"""Speed of a pruned vs an unpruned SelecSLS classifier, measured in one process, interleaved.

    python -m selecsls.tools.bench.prune [--model selecsls60] [--fraction 0.3] [--reps 5]

The source model is randomly initialised with `fraction` of every layer's BN gammas set exactly to
zero (and random betas / running statistics), the situation after sparsity-inducing training.
Three networks run the same batch in turn, rep after rep: "unpruned" (with BN), "fused" (BN folded,
nothing removed) and "pruned" (threshold 1e-3). Each cell is the median of --reps timed runs after
one warm-up; the speed-ups ("x") are medians of rep-wise ratios against "unpruned" in the same rep,
which is what to read on a shared machine.
Modes: "fp32" (eager, NCHW) and "fast" (channels_last + bfloat16 autocast, the CPU deploy path).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
from torch import nn

from selecsls.heads import build_classifier
from selecsls.heads.prune import prune_model
from selecsls.tools._cli import run_cli
from selecsls.tools.bench.flops import count_macs
from selecsls.tools.engine.amp import cpu_has_bf16


def zero_gammas(model: nn.Module, fraction: float, seed: int = 0) -> nn.Module:
    """In place: random BN statistics and betas of both signs; ceil(fraction * C) gammas of every
    BN set exactly to zero, the others of both signs with |gamma| in [0.5, 1.5). Returns eval()."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
                gamma = sign * (torch.rand(n, generator=gen) + 0.5)
                gamma[torch.randperm(n, generator=gen)[: math.ceil(fraction * n)]] = 0
                m.weight.copy_(gamma)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="selecsls60", help="SelecSLS configuration")
    parser.add_argument("--fraction", type=float, default=0.3, help="share of zero gammas")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512], help="input sides")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
    parser.add_argument("--modes", nargs="+", default=["fp32", "fast"], choices=["fp32", "fast"])
    parser.add_argument("--reps", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    return parser.parse_args(argv)


@torch.no_grad()
def time_once(model: nn.Module, images: torch.Tensor, fast: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=fast):
        model(images)
    return time.perf_counter() - start


def bench_cell(
    models: dict[str, nn.Module], size: int, batch: int, fast: bool, reps: int
) -> dict[str, list[float]]:
    """{model name: seconds of each rep} for one (size, batch, mode); within a rep the models run
    back to back, so rep-wise ratios see nearly the same machine load."""
    images = torch.randn(batch, 3, size, size)
    if fast:
        images = images.contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up: oneDNN picks and caches kernels per shape
        time_once(model, images, fast)
    for _ in range(reps):
        for name, model in models.items():
            times[name].append(time_once(model, images, fast))
    return times


def median_ratio(base: list[float], other: list[float]) -> float:
    """Median over reps of base / other (the speed-up of `other`)."""
    return statistics.median(b / o for b, o in zip(base, other))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 <= args.fraction < 1 or args.reps < 1:
        raise ValueError("--fraction must be in [0, 1) and --reps >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    source = zero_gammas(build_classifier(args.model), args.fraction)
    models = {
        "unpruned": source,
        "fused": prune_model(source, None),
        "pruned": prune_model(source, 1e-3),
    }
    print(
        f"{args.model}, {args.fraction:.0%} zero gammas, {torch.get_num_threads()} threads, "
        f"median of {args.reps}; torch {torch.__version__}"
    )
    for size in args.sizes:
        macs = {name: count_macs(m, (size, size)) / 1e9 for name, m in models.items()}
        print(f"GMACs per image at {size}: " + ", ".join(f"{k} {v:.2f}" for k, v in macs.items()))
    if "fast" in args.modes and not cpu_has_bf16():
        print("note: this CPU has no native bf16 (AVX-512 BF16 / AMX): the fast mode's bf16 runs")
        print("through slow fallback kernels here, so its times are not a deploy figure")
    print()
    print("| mode | size | batch | unpruned ms | fused ms | pruned ms | fused x | pruned x |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes:
        fast = mode == "fast"
        runs = {
            name: m.to(memory_format=torch.channels_last)
            if fast
            else m.to(memory_format=torch.contiguous_format)
            for name, m in models.items()
        }
        for size in args.sizes:
            for batch in args.batches:
                t = bench_cell(runs, size, batch, fast, args.reps)
                ms = {name: 1e3 * statistics.median(v) for name, v in t.items()}
                print(
                    f"| {mode} | {size} | {batch} | {ms['unpruned']:.1f} | {ms['fused']:.1f} | "
                    f"{ms['pruned']:.1f} | {median_ratio(t['unpruned'], t['fused']):.2f} | "
                    f"{median_ratio(t['unpruned'], t['pruned']):.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
