"""The layers a pruned network is made of: convs and linears that accept zero widths, and convs
that add the exact contribution of constant (pruned) input channels.

A zero-padded conv reading a constant channel c sees c inside the image and 0 in the padding, so
that channel contributes conv2d(ones(1, 1, H, W), K) with K = c * W[:, i]: sum(K) in the interior,
less near the border. `PrunedConv2d` keeps the sum over all constant inputs in `border_kernel`
and adds bias + that map as one (1, out, H', W') "offset". Without gradients the offset is cached
per input size (it depends on nothing else), so the steady-state cost is one broadcast add.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

_MAX_CACHED_SIZES = 8  # offsets kept per layer (input sizes seen most recently)


def _quiet(fn, *args, **kwargs):
    # torch warns that initialising zero-element tensors is a no-op; zero widths are legal here
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return fn(*args, **kwargs)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class PrunedConv2d(nn.Conv2d):
    """A biased Conv2d that may have zero input or output channels, plus an optional
    `border_kernel` (out, 1, kh, kw): the folded constant input channels, whose contribution
    conv2d(ones(1, 1, H, W), border_kernel) (this conv's stride, padding, dilation) is added.

    x (N, in, H, W) -> (N, out, H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        border: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        # Parameters start as zeros (unallocated with device="meta", for code that assigns them
        # at once): values always come from pruning or a checkpoint.
        kwargs = {"bias": True, "device": "meta"}
        _quiet(
            super().__init__,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            **kwargs,
        )
        self.weight = nn.Parameter(torch.zeros(self.weight.shape, device=device))
        self.bias = nn.Parameter(torch.zeros(out_channels, device=device))
        kh, kw = self.kernel_size
        kernel = torch.zeros(out_channels, 1, kh, kw, device=device) if border else None
        self.register_buffer("border_kernel", kernel)
        self._offsets: dict[tuple, torch.Tensor] = {}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        sizes = []
        for size, k, s, p, d in zip(
            (height, width), self.kernel_size, self.stride, self.padding, self.dilation
        ):
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def offset(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """bias + border term for input `x` (N, in, H, W): (1, out, H', W') in `dtype`."""
        kernel, bias = self.border_kernel, self.bias
        if kernel is None:  # a zero-input layer without constants: just the bias
            kernel = bias.new_zeros(self.out_channels, 1, *self.kernel_size)
        cacheable = not _tracing() and not (torch.is_grad_enabled() and bias.requires_grad)
        key = None
        if cacheable:
            key = (
                *x.shape[2:],
                dtype,
                kernel.data_ptr(),
                kernel._version,
                bias.data_ptr(),
                bias._version,
            )
            if key in self._offsets:
                return self._offsets[key]
        if x.shape[1] > 0:  # ones_like keeps H, W symbolic when traced for export
            ones = torch.ones_like(x[:1, :1], dtype=kernel.dtype)
        else:
            ones = torch.ones(1, 1, *x.shape[2:], device=kernel.device, dtype=kernel.dtype)
        with torch.autocast(kernel.device.type, enabled=False):  # exact sum, rounded once
            offset = F.conv2d(ones, kernel, bias, self.stride, self.padding, self.dilation)
        offset = offset.to(dtype)
        if key is not None:
            if len(self._offsets) >= _MAX_CACHED_SIZES:
                self._offsets.pop(next(iter(self._offsets)))
            self._offsets[key] = offset
        return offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_channels == 0:
            n, _, h, w = x.shape
            return x.new_zeros(n, 0, *self.output_size(h, w))
        if self.in_channels == 0:  # only constants: torch's conv2d mishandles zero input channels
            offset = self.offset(x, x.dtype)
            out = offset.expand(x.shape[0], -1, -1, -1)
            return out.contiguous(memory_format=_memory_format(x))
        if self.border_kernel is None:
            return super().forward(x)
        out = self._conv_forward(x, self.weight, None)
        return out + self.offset(x, out.dtype)

    def _apply(self, fn, recurse=True):
        self._offsets = {}  # .to() / .cuda() / .half(): cached offsets are stale
        return super()._apply(fn, recurse)


class PrunedLinear(nn.Linear):
    """nn.Linear that also works with zero input features (then it returns its bias)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        _quiet(super().__init__, in_features, out_features, device="meta")
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_features == 0:
            return self.bias.to(x.dtype).expand(*x.shape[:-1], self.out_features).clone()
        return super().forward(x)
