"""The layout of a pruned network as plain data, so a checkpoint can rebuild it.

`pruned_layout(model)` lists every pruned layer by module name with its widths (and whether it
carries a border kernel); `apply_pruned_layout(model, layout)` turns a freshly built, BN-fused
network of the original widths into that layout (zero weights, ready for `load_state_dict`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .prune_layers import PrunedConv2d, PrunedLinear


def pruned_layout(model: nn.Module) -> dict[str, Any]:
    """{"convs": {name: [in, out, has_border]}, "linears": {name: [in, out]}} of `model`."""
    convs, linears = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, PrunedConv2d):
            border = module.border_kernel is not None
            convs[name] = [module.in_channels, module.out_channels, border]
        elif isinstance(module, PrunedLinear):
            linears[name] = [module.in_features, module.out_features]
    return {"convs": convs, "linears": linears}


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)  # Sequential children are named "0", "1", ... too


def _lookup(model: nn.Module, name: str, kind: type, what: str) -> nn.Module:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"pruned layout names {what} {name!r}, which the model lacks") from None
    if not isinstance(module, kind):
        raise ValueError(f"pruned layout: {name!r} is a {type(module).__name__}, not a {what}")
    return module


def apply_pruned_layout(model: nn.Module, layout: dict[str, Any]) -> nn.Module:
    """In place: replace the named convs/linears of `model` by pruned ones of the stored widths
    (kernel, stride and padding are taken from the module being replaced). Returns `model`."""
    for name, (in_channels, out_channels, border) in layout.get("convs", {}).items():
        conv = _lookup(model, name, nn.Conv2d, "conv")
        device = conv.weight.device
        new = PrunedConv2d(
            int(in_channels),
            int(out_channels),
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            border=bool(border),
        )
        _replace(model, name, new.to(device))
    for name, (in_features, out_features) in layout.get("linears", {}).items():
        device = _lookup(model, name, nn.Linear, "linear").weight.device
        _replace(model, name, PrunedLinear(int(in_features), int(out_features)).to(device))
    return model
