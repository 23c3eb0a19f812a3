"""Counting multiply-accumulates (MACs) and parameters of a model, per module, with forward hooks.

Counts Conv2d (including transposed and pruned convs) and Linear layers, the layers that dominate
a CNN's cost; BN, ReLU, pooling and additions (e.g. the cached border offsets of pruned convs) are
not counted.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs of one call for one image (the batch dimension is divided out)."""
    batch = output.shape[0] if output.dim() > 1 else 1
    if isinstance(module, nn.ConvTranspose2d):
        # every input pixel scatters a kernel of (out/groups) x kh x kw into the output
        x = inputs[0]
        return x[0].numel() * module.weight[0].numel()
    if isinstance(module, nn.Conv2d):
        return output[0].numel() * module.weight[0].numel()
    return output.numel() // batch * module.in_features  # Linear: each output reads every input


@torch.no_grad()
def count_macs_by_module(
    model: nn.Module, input_size: tuple[int, int] = (224, 224), in_channels: int = 3
) -> dict[str, int]:
    """{module name: MACs per image} for every Conv2d / ConvTranspose2d / Linear of `model`,
    from one forward pass on zeros of shape (1, in_channels, H, W). Modules that did not run are
    absent; a module run twice counts twice."""
    counts: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            counts[name] = counts.get(name, 0) + _layer_macs(module, inputs, output)

        return record

    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):
            handles.append(module.register_forward_hook(hook(name)))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, in_channels, *input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return counts


def count_macs(
    model: nn.Module, input_size: tuple[int, int] = (224, 224), in_channels: int = 3
) -> int:
    """Total MACs per image of `model` at `input_size` (H, W); see `count_macs_by_module`."""
    return sum(count_macs_by_module(model, input_size, in_channels).values())


def count_params(model: nn.Module, prefixes: Iterable[str] | None = None) -> int:
    """Number of parameters of `model`, or of those whose names start with one of `prefixes`."""
    prefixes = tuple(prefixes) if prefixes is not None else ("",)
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))
