"""Folding BatchNorm into the preceding convolution, for inference ("deploy" mode).

Works on any module built from `conv_bn_relu` blocks (backbone and heads alike): each
Sequential(Conv2d, BatchNorm2d, ReLU) becomes Sequential(Conv2d with bias, Identity, ReLU), keeping
the indices so the conv's state-dict keys do not move. The source model is never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def is_conv_bn(module: nn.Module) -> bool:
    """True for a Sequential whose first two layers are Conv2d then BatchNorm2d."""
    return (
        isinstance(module, nn.Sequential)
        and len(module) >= 2
        and isinstance(module[0], nn.Conv2d)
        and isinstance(module[1], nn.BatchNorm2d)
    )


def fuse_bn_structure(model: nn.Module) -> nn.Module:
    """Turn every conv-BN pair of `model` (in place) into a biased conv + Identity, weights
    untouched: the module layout of a fused model, ready to receive fused weights."""
    for module in model.modules():
        if is_conv_bn(module):
            conv = module[0]
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device))
            module[1] = nn.Identity()
    return model


@torch.no_grad()
def fuse_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every BN folded into its conv (exact in eval mode).

    If the model has a `config` dict, the copy's config gains "fused": True so that
    `build_model` can rebuild the fused layout from a checkpoint.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if is_conv_bn(module):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    if isinstance(getattr(fused, "config", None), dict):
        fused.config["fused"] = True
    return fused
