"""Probe: would cuDNN's fused convolution + ReLU shorten the batch-1 graph path? (CUDA)

At batch 1 a BN-folded SelecSLS-60 launches 129 kernels, 59 of them ReLUs right after a
convolution (`bench.kernels`); ResNet-50 has 33 such pairs of its 121.
`torch.cudnn_convolution_relu` runs each pair as one cuDNN call, but it is known to be slower
than the pair for some shapes
(pytorch/pytorch#68506: 7x7, channels_last), so only a measurement can say whether to use it.
This one times both forms of each model in the benchmark's `graph` mode (fp16, channels_last,
replayed from a CUDA graph), same process, alternated:

    python -m selecsls.tools.bench.conv_relu --models selecsls60 resnet50 --sizes 224 512

`fuse_conv_relu` finds the pairs with torch.fx (a convolution whose only user is a ReLU,
BN-folding's Identity layers in between skipped). Off CUDA the fused layer runs the
convolution and the ReLU as before, which is what the CPU tests check.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from torch import fx, nn

from selecsls.tools.bench.models import BenchmarkError, fold_bn, resolve_model
from selecsls.tools.bench.timing import input_hw, size_label
from selecsls.tools.deploy.cuda_graph import CapturedCall


class ConvReLU(nn.Module):
    """A Conv2d then ReLU; one cuDNN call on CUDA (`torch.cudnn_convolution_relu`)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if x.is_cuda and conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
            return torch.cudnn_convolution_relu(
                x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
            )
        return F.relu(conv(x))


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    if node.op == "call_function":
        return node.target in (torch.relu, torch.relu_, F.relu)
    return node.op == "call_method" and node.target in ("relu", "relu_")


def fuse_conv_relu(model: nn.Module) -> tuple[fx.GraphModule, int]:
    """An fx copy of `model` (eval, BN folded) with every convolution -> ReLU pair as one
    ConvReLU; returns (module, pairs fused)."""
    traced = fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    fused = 0
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.Conv2d):
            continue
        last = node
        while len(last.users) == 1:  # BN folding leaves Identity layers between the two
            user = next(iter(last.users))
            if user.op == "call_module" and isinstance(modules[user.target], nn.Identity):
                last = user
                continue
            break
        relu = next(iter(last.users)) if len(last.users) == 1 else None
        if relu is None or not _is_relu(relu, modules):
            continue
        traced.add_submodule(node.target, ConvReLU(modules[node.target]))
        relu.replace_all_uses_with(node)
        for dead in _chain(node, relu):
            traced.graph.erase_node(dead)
        fused += 1
    traced.graph.lint()
    traced.recompile()
    return traced, fused


def _chain(start: fx.Node, end: fx.Node) -> list[fx.Node]:
    """The nodes after `start` up to and including `end`, last first (erasable in that order)."""
    nodes, node = [], end
    while node is not start:
        nodes.append(node)
        node = node.args[0]
    return nodes


def replay_ms(captured: CapturedCall, images: torch.Tensor, reps: int) -> float:
    """Median ms of one replay of an already captured call, by CUDA events."""
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        captured(images)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def compare(name: str, sizes: list[int | str], reps: int, rounds: int) -> list[str]:
    """Table rows: model, size, plain and fused graph ms (medians over alternated rounds), the
    speed-up and the largest output difference between the two forms (fp16)."""
    model, _ = fold_bn(resolve_model(name).build().eval())
    fused, pairs = fuse_conv_relu(model)  # shares the convolutions' weights with `model`
    device = torch.device("cuda")
    forms = {
        form: module.to(device, torch.float16, memory_format=torch.channels_last)
        for form, module in (("plain", model), ("fused", fused))
    }
    rows = []
    for size in sizes:
        h, w = input_hw(size)
        images = torch.randn(1, 3, h, w, device=device, dtype=torch.float16)
        images = images.to(memory_format=torch.channels_last)
        captured = {form: CapturedCall(module) for form, module in forms.items()}
        outputs = {form: _first(call(images)).float().clone() for form, call in captured.items()}
        want, got = outputs["plain"], outputs["fused"]
        error = float((want - got).abs().max() / want.abs().max().clamp_min(1e-6))
        times: dict[str, list[float]] = {form: [] for form in forms}
        for _ in range(rounds):
            for form, call in captured.items():
                times[form].append(replay_ms(call, images, reps))
        plain, fast = (statistics.median(times[form]) for form in ("plain", "fused"))
        rows.append(
            f"| {name} ({pairs} pairs) | {size_label(size)} | {plain:.3f} | {fast:.3f} | "
            f"{plain / fast:.2f}x | {error:.1e} |"
        )
    return rows


def _first(out):
    return out if isinstance(out, torch.Tensor) else next(iter(out.values()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["selecsls60", "resnet50"])
    p.add_argument("--sizes", nargs="+", default=["224", "512", "512x320"])
    p.add_argument("--reps", type=int, default=50, help="replays timed per round")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (medians)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("needs a CUDA device: the fused layer is cuDNN's (torch sees none)")
    torch.backends.cudnn.benchmark = True
    sizes = [int(size) if size.isdigit() else size for size in args.sizes]
    print("| model | size | graph ms | fused graph ms | speed-up | max rel. difference |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models:
        try:
            rows = compare(name, sizes, args.reps, args.rounds)
        except (BenchmarkError, RuntimeError) as err:  # a cuDNN refusal names the layer
            print(f"| {name} | - | - | - | failed: {str(err).splitlines()[0][:120]} | |")
            continue
        print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
