"""A pose network's CPU time per precision against this CPU's own compute bound, in one run:

    python -m selecsls.tools.bench.cpu_bound --backbone selecsls60 --size 512x320 --threads 2

The bound of a precision is the network's multiply-adds (2 operations each) over the matrix
multiply throughput this CPU reaches in that precision (large square matmuls: fp32 and bf16
`torch.mm`, int8 the faster of the x86 engine's u8 x s8 quantized linear, the kernel family of
the int8 network, and `torch._int_mm`). The CPU's bound is the lowest of them: the time the
network would take if every layer ran at the best matmul rate. Matmuls and networks are timed
round-robin in the same rounds, so a shared machine's drift hits them alike; the table gives
medians. bf16 is timed only where the CPU computes it natively (elsewhere it runs slow fallback
kernels, docs/benchmarks.md); `--compile` adds the demo's torch.compile'd bf16/fp32 network.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from selecsls.heads import build_model
from selecsls.tools._cli import parse_size
from selecsls.tools.bench.flops import count_macs
from selecsls.tools.deploy.precision import (
    cpu_candidates,
    cpu_features,
    cpu_name,
    cpu_runner,
    time_runners,
)
from selecsls.tools.engine.amp import cpu_has_bf16

TARGET = 1.5  # the goal: network within 1.5x of the CPU's compute bound
# Large enough that every kernel reaches its peak here (at 1024 int8 gave 644 against 760 GOP/s)
MATMUL_SIZE = 2048


def matmul_kernels(size: int = MATMUL_SIZE) -> dict[str, tuple[Callable[[], object], int]]:
    """{precision: (one (size x size) @ (size x size) matmul, its operation count)}; int8 has
    one entry per kernel (int8 quantized linear, int8 _int_mm) where torch has it."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    ops = 2 * size**3
    kernels: dict[str, tuple[Callable[[], object], int]] = {"fp32": (lambda: a @ b, ops)}
    if cpu_has_bf16():
        a16, b16 = a.bfloat16(), b.bfloat16()
        kernels["bf16"] = (lambda: a16 @ b16, ops)
    linear = _quantized_linear(a, b)
    if linear is not None:
        kernels["int8 linear"] = (linear, ops)
    a8 = torch.randint(-64, 64, (size, size), dtype=torch.int8, generator=generator)
    b8 = torch.randint(-64, 64, (size, size), dtype=torch.int8, generator=generator)
    if _int_mm_works(a8, b8):
        kernels["int8 _int_mm"] = (lambda: torch._int_mm(a8, b8), ops)
    return kernels


def _quantized_linear(x: torch.Tensor, weight: torch.Tensor) -> Callable[[], object] | None:
    """x (M, K) @ weight (K, N) as the x86 engine's u8 activations x s8 weights, or None."""
    try:
        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors' deprecation notice
            packed = torch.ops.quantized.linear_prepack(
                torch.quantize_per_tensor(weight.t().contiguous(), 0.02, 0, torch.qint8), None
            )
            qx = torch.quantize_per_tensor(x.abs(), 0.02, 0, torch.quint8)
    except (RuntimeError, AttributeError):
        return None
    return lambda: torch.ops.quantized.linear(qx, packed, 0.1, 0)


def _int_mm_works(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        torch._int_mm(a[:32, :32], b[:32, :32])
    except (RuntimeError, AttributeError):
        return False
    return True


def network_runners(model, size: tuple[int, int], compile: bool) -> dict[str, Callable]:
    """{label: runner} for every CPU precision worth timing here (and the compiled mode)."""
    runners = {p: cpu_runner(model, p, size) for p in cpu_candidates()}
    if compile:
        from selecsls.tools.realtime.runtime import TorchRunner

        runner = TorchRunner(model, "cpu", "auto", compile=True)
        runner.warm_up(size)
        if runner.compiled:
            runners[f"{runner.precision} compiled"] = runner
    return runners


def measure(
    model, size: tuple[int, int], reps: int, compile: bool = False, matmul_size: int = MATMUL_SIZE
) -> dict:
    """Matmul throughput (GOP/s) per kernel, network ms per precision and the network's MACs."""
    macs = count_macs(model, (size[1], size[0]))
    kernels = matmul_kernels(matmul_size)
    nets = network_runners(model, size, compile)
    images = torch.zeros(1, 3, size[1], size[0])
    jobs: dict[str, Callable] = {
        f"matmul {k}": (lambda _images, fn=fn: fn()) for k, (fn, _) in kernels.items()
    }
    jobs.update({f"network {k}": runner for k, runner in nets.items()})
    with torch.inference_mode():
        times = time_runners(jobs, images, reps)
    throughput = {
        k: ops / (1e-3 * float(np.median(times[f"matmul {k}"]))) / 1e9
        for k, (_, ops) in kernels.items()
    }
    network = {k: times[f"network {k}"] for k in nets}
    return {"macs": macs, "matmul_gops": throughput, "network_ms": network}


def bounds(result: dict) -> dict[str, float]:
    """{precision: compute-bound ms}: 2 x MACs over that precision's best matmul rate."""
    best: dict[str, float] = {}
    for kernel, gops in result["matmul_gops"].items():
        precision = kernel.split()[0]
        best[precision] = max(best.get(precision, 0.0), gops)
    ops = 2 * result["macs"]
    return {p: ops / (gops * 1e9) * 1e3 for p, gops in best.items()}


def report(result: dict, header: str) -> list[str]:
    """The markdown table and the verdict lines."""
    limits = bounds(result)
    cpu_bound = min(limits.values())
    lines = [header, f"network: {result['macs'] / 1e9:.2f} GMACs per frame", ""]
    lines.append("| kernel | matmul GOP/s | bound ms for this network |")
    lines.append("|---|---:|---:|")
    for kernel, gops in result["matmul_gops"].items():
        lines.append(f"| {kernel} | {gops:.0f} | {2 * result['macs'] / (gops * 1e6):.1f} |")
    lines += ["", "| network | ms (median) | IQR | / own precision's bound | / CPU's bound |"]
    lines.append("|---|---:|---:|---:|---:|")
    medians = {}
    for name, values in result["network_ms"].items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        medians[name] = median
        own = limits.get(name.split()[0])
        own_text = f"{median / own:.2f}x" if own else "-"
        lines.append(
            f"| {name} | {median:.1f} | {q3 - q1:.1f} | {own_text} | {median / cpu_bound:.2f}x |"
        )
    fastest = min(medians, key=medians.get)
    ratio = medians[fastest] / cpu_bound
    which = min(limits, key=limits.get)
    verdict = "met" if ratio <= TARGET else "missed"
    lines += [
        "",
        f"CPU's compute bound: {cpu_bound:.1f} ms ({which} matmuls); fastest network: {fastest} "
        f"{medians[fastest]:.1f} ms = {ratio:.2f}x the bound (target <= {TARGET}x: {verdict})",
    ]
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="selecsls60")
    p.add_argument("--head", default="xnect2d", help="2D head: xnect2d or centre2d")
    p.add_argument("--width", type=float, default=1.0, help="backbone width multiplier")
    p.add_argument("--size", default="512x320", help="network input WxH")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7, help="timed rounds (medians)")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd mode")
    p.add_argument(
        "--matmul-size", type=int, default=MATMUL_SIZE, help="side of the square matmuls timed"
    )
    p.add_argument("--json", metavar="PATH", help="also write the measurements here")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if min(args.reps, args.threads, args.matmul_size) < 1:
        p.error("--reps, --threads and --matmul-size must be >= 1")
    try:
        size = parse_size(args.size)
        model = build_model(
            {"backbone": args.backbone, "backbone_width": args.width, "heads": {args.head: {}}}
        ).eval()
    except ValueError as err:
        p.error(str(err))
    torch.set_num_threads(args.threads)
    result = measure(model, size, args.reps, args.compile, args.matmul_size)
    header = (
        f"{args.backbone} (width {args.width}) + {args.head}, {size[0]}x{size[1]}, batch 1, "
        f"{args.threads} thread(s), {cpu_name()} ({cpu_features()}), torch {torch.__version__}"
    )
    print("\n".join(report(result, header)))
    if args.json:
        payload = {"header": header, **result, "bound_ms": bounds(result)}
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
