"""Exact channel pruning of conv-BN-ReLU networks (implicit filter sparsity), with BN folding.

A channel whose BN gamma is exactly zero outputs the constant c = ReLU(beta) everywhere, whatever
its input. Dropping it (as the seed does) is exact only when c == 0. Here its effect is folded into
every consumer instead:

- a conv without padding (1x1) or a linear layer after a mean pool: c enters the bias exactly;
- a zero-padded conv (3x3, stride 1 or 2): the constant's contribution is
  conv2d(ones(1, 1, H, W), K) with K = sum_i c_i W[:, i], which equals sum(K) in the interior and
  differs only where the kernel overlaps the padding. `PrunedConv2d` adds that map on the fly
  (one single-channel conv, about 1/in_channels of the layer's cost), so any input size works.

Channels with 0 < |gamma| <= threshold are removed too, with c = ReLU(beta): the BN output when
its input sits at its running mean, the best constant estimate. That part is approximate; measure
it (`selecsls.tools.prune` does). A layer left with no channel outputs only constants and stays
exact: its consumers see a zero-channel tensor and get everything from bias and border terms.

The unit of work is a `ChannelState` (which channels of a tensor survive, and the constants of the
removed ones). Producers (`prune_conv_bn`) turn an input state into an output state; consumers
(`absorb_conv`, `absorb_linear`) swallow the constants of their input. A head joins in by
calling these on its own layers (see `selecsls.heads.prune`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .prune_layers import PrunedConv2d, PrunedLinear


@dataclass
class ChannelState:
    """keep: (C,) bool, which channels survive; constant: (C,) float, the value each removed
    channel holds everywhere (0 for kept channels)."""

    keep: torch.Tensor
    constant: torch.Tensor

    @staticmethod
    def full(channels: int) -> ChannelState:
        """All `channels` kept (e.g. the input image)."""
        return ChannelState(torch.ones(channels, dtype=torch.bool), torch.zeros(channels))

    @staticmethod
    def cat(states: list[ChannelState]) -> ChannelState:
        """The state of a channel concatenation (torch.cat(..., dim=1))."""
        return ChannelState(
            torch.cat([s.keep for s in states]), torch.cat([s.constant for s in states])
        )

    @property
    def kept(self) -> int:
        return int(self.keep.sum())


@dataclass(frozen=True)
class KeepRule:
    """Which channels of a conv-BN layer survive: those with |gamma| > threshold (all of them when
    threshold is None). An object rather than a bare float so head pruners keep one signature
    if the rule grows. (Rounding widths up to multiples of 16/32 was measured: no faster here.)"""

    threshold: float | None = 1e-3

    def keep(self, gamma: torch.Tensor) -> torch.Tensor:
        """(C,) gamma -> (C,) bool keep mask."""
        if self.threshold is None:
            return torch.ones_like(gamma, dtype=torch.bool)
        return gamma.abs() > self.threshold


def bn_state(bn: nn.BatchNorm2d, rule: KeepRule) -> ChannelState:
    """The output state of a conv-BN layer under `rule`: removed channels hold ReLU(beta)
    (exact for gamma == 0)."""
    keep = rule.keep(bn.weight.detach().float())
    constant = torch.where(keep, 0.0, bn.bias.detach().float().clamp(min=0))
    return ChannelState(keep, constant)


def _new_conv(
    conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, border: torch.Tensor | None
) -> PrunedConv2d:
    out = PrunedConv2d(
        weight.shape[1],
        weight.shape[0],
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        border=border is not None,
        device="meta",
    )
    dtype = conv.weight.dtype
    out.weight = nn.Parameter(weight.to(dtype).contiguous())
    out.bias = nn.Parameter(bias.to(weight.device, dtype))
    if border is not None:
        out.border_kernel = border.to(weight.device, dtype)
    return out


@torch.no_grad()
def absorb_conv(
    conv: nn.Conv2d,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_state: ChannelState,
    keep_out: torch.Tensor | None = None,
) -> PrunedConv2d:
    """A PrunedConv2d computing `conv` (with `weight` (O, I, kh, kw), `bias` (O,) or None in
    place of its own) on the kept inputs of `in_state`, restricted to outputs `keep_out`.

    The constant inputs are folded into the bias (no padding) or into a border kernel.
    """
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError("pruning supports only zero-padded convolutions with groups=1")
    device = weight.device
    bias = torch.zeros(weight.shape[0], device=device) if bias is None else bias
    bias = bias.double()  # sums of many constant contributions: accumulate in float64
    if keep_out is not None:
        rows = torch.nonzero(keep_out).flatten().to(device)
        weight, bias = weight.index_select(0, rows), bias.index_select(0, rows)
    removed = torch.nonzero(~in_state.keep).flatten().to(device)
    constant = in_state.constant.to(device, weight.dtype).index_select(0, removed)
    border = None
    if bool(constant.any()) and weight.shape[0] > 0:
        # K = sum_i c_i W[:, i]: (O, 1, kh, kw), the response to the constant channels
        kernel = torch.einsum("oihw,i->ohw", weight.index_select(1, removed), constant)
        kernel = kernel.double().unsqueeze(1)
        if all(p == 0 for p in conv.padding):
            bias = bias + kernel.sum((1, 2, 3))  # every window sees the whole kernel
        else:
            border = kernel
    kept = torch.nonzero(in_state.keep).flatten().to(device)
    return _new_conv(conv, weight.index_select(1, kept), bias, border)


@torch.no_grad()
def prune_conv_bn(layer: nn.Sequential, in_state: ChannelState, rule: KeepRule) -> ChannelState:
    """In place: Sequential(Conv2d, BatchNorm2d, ReLU) -> Sequential(PrunedConv2d, Identity, ReLU)
    with BN folded, pruned outputs and absorbed constant inputs. Returns the output state."""
    conv, bn = layer[0], layer[1]
    if not isinstance(bn, nn.BatchNorm2d):
        raise ValueError("pruning needs the BatchNorm layers: prune the model before fusing it")
    out_state = bn_state(bn, rule)
    # float32 folding, as torch's own fuse_conv_bn_eval (rounding ~1e-7 relative)
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    layer[0] = absorb_conv(conv, weight, bias, in_state, out_state.keep)
    layer[1] = nn.Identity()
    return out_state


@torch.no_grad()
def absorb_linear(linear: nn.Linear, in_state: ChannelState) -> PrunedLinear:
    """A linear layer reading only the kept features; the constants (which survive a mean pool
    unchanged) go into its bias."""
    weight, device, dtype = linear.weight, linear.weight.device, linear.weight.dtype
    bias = torch.zeros(weight.shape[0], device=device) if linear.bias is None else linear.bias
    bias = bias.double() + weight.double() @ in_state.constant.to(device, torch.float64)
    out = PrunedLinear(in_state.kept, linear.out_features).to(device)
    out.weight.data = weight[:, in_state.keep.to(device)].contiguous()
    out.bias.data = bias.to(dtype)
    return out


def prune_selecsls(backbone: nn.Module, rule: KeepRule) -> dict[str, ChannelState]:
    """Prune a SelecSLS backbone in place (call on a copy). Returns the state of each declared
    feature map ("stride4", ...), for the heads to absorb."""
    state = ChannelState.full(backbone.stem[0].in_channels)
    state = prune_conv_bn(backbone.stem, state, rule)
    skip: ChannelState | None = None
    features: dict[str, ChannelState] = {}
    for index, block in enumerate(backbone.features):
        d1 = prune_conv_bn(block.conv1, state, rule)
        d2 = prune_conv_bn(block.conv3, prune_conv_bn(block.conv2, d1, rule), rule)
        d3 = prune_conv_bn(block.conv5, prune_conv_bn(block.conv4, d2, rule), rule)
        parts = [d1, d2, d3] if block.is_first or skip is None else [d1, d2, d3, skip]
        state = prune_conv_bn(block.conv6, ChannelState.cat(parts), rule)
        if block.is_first:
            skip = state
        key = backbone._taps.get(index)
        if key is not None:
            features[key] = state
    return features
