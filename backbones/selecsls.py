"""The SelecSLS backbone: stem plus three stages, ending at stride 16.

The layer tables and module names follow the seed reference implementation
(mehtadushy/SelecSLS-Pytorch) so that its published state dicts map onto this network by a
plain key-prefix rename (see `selecsls.backbones.checkpoint`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import nn

# One row per block: (in_channels, skip_channels, mid_channels, out_channels, is_first, stride).
# The first block of a stage (stride 2) has no skip input; its output becomes the stage's long-range
# skip that every later block of the stage concatenates into its conv6.
BlockRow = tuple[int, int, int, int, bool, int]

_STAGE_42 = [
    (32, 0, 64, 64, True, 2),
    (64, 64, 64, 128, False, 1),
    (128, 0, 144, 144, True, 2),
    (144, 144, 144, 288, False, 1),
    (288, 0, 304, 304, True, 2),
    (304, 304, 304, 480, False, 1),
]
_STAGE_60 = [
    (32, 0, 64, 64, True, 2),
    (64, 64, 64, 128, False, 1),
    (128, 0, 128, 128, True, 2),
    (128, 128, 128, 128, False, 1),
    (128, 128, 128, 288, False, 1),
    (288, 0, 288, 288, True, 2),
    (288, 288, 288, 288, False, 1),
    (288, 288, 288, 288, False, 1),
    (288, 288, 288, 416, False, 1),
]
_STAGE_84 = [
    (32, 0, 64, 64, True, 2),
    (64, 64, 64, 144, False, 1),
    (144, 0, 144, 144, True, 2),
    *[(144, 144, 144, 144, False, 1)] * 3,
    (144, 144, 144, 304, False, 1),
    (304, 0, 304, 304, True, 2),
    *[(304, 304, 304, 304, False, 1)] * 4,
    (304, 304, 304, 512, False, 1),
]
_STAGE_102 = [
    (32, 0, 64, 64, True, 2),
    *[(64, 64, 64, 64, False, 1)] * 2,
    (64, 64, 64, 128, False, 1),
    (128, 0, 128, 128, True, 2),
    *[(128, 128, 128, 128, False, 1)] * 3,
    (128, 128, 128, 288, False, 1),
    (288, 0, 288, 288, True, 2),
    *[(288, 288, 288, 288, False, 1)] * 5,
    (288, 288, 288, 480, False, 1),
]

# The "_B" variants share their base network's core; only the classification head differs.
STAGE_TABLES: dict[str, list[BlockRow]] = {
    "selecsls42": _STAGE_42,
    "selecsls42b": _STAGE_42,
    "selecsls60": _STAGE_60,
    "selecsls60b": _STAGE_60,
    "selecsls84": _STAGE_84,
    "selecsls102": _STAGE_102,
}

STEM_CHANNELS = 32
MAX_WIDTH = 4.0
CHANNEL_MULTIPLE = 8  # scaled widths round to multiples of 8: even halves, SIMD-friendly


def scaled_channels(channels: int, width: float) -> int:
    """`channels` x `width`, rounded to a multiple of 8 (at least 8); 0 stays 0 (no skip)."""
    if channels == 0:
        return 0
    return max(CHANNEL_MULTIPLE, round(channels * width / CHANNEL_MULTIPLE) * CHANNEL_MULTIPLE)


def scale_blocks(blocks: list[BlockRow], width: float) -> list[BlockRow]:
    """The block table with every block's channels scaled by `width` (the 32-channel stem and so
    the first block's input stay). width 1.0 returns the seed's table unchanged.

    At width 0.5 a SelecSLS trains about twice as many samples per CPU-second (the synthetic
    quickstarts use it); published weights exist for width 1 only.
    """
    if not 0 < width <= MAX_WIDTH:
        raise ValueError(f"backbone width must be in (0, {MAX_WIDTH:g}], got {width}")
    if width == 1:
        return list(blocks)
    rows = [
        (scaled_channels(i, width), scaled_channels(k, width), scaled_channels(m, width),
         scaled_channels(o, width), first, stride)
        for i, k, m, o, first, stride in blocks
    ]  # fmt: skip
    rows[0] = (blocks[0][0], *rows[0][1:])  # the stem's output
    return rows


@dataclass(frozen=True)
class FeatureSpec:
    """What a backbone declares about one output feature map: its channels and its stride."""

    channels: int
    stride: int


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU, indexed 0/1/2 as in the seed so state-dict keys line up."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def init_weights(module: nn.Module) -> None:
    """He init for convolutions (fan-out, as timm does for SelecSLS); BN keeps torch's defaults."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class SelecSLSBlock(nn.Module):
    """One SelecSLS block with selective short- and long-range concatenative skips.

    conv1..conv5 form a chain (3x3 s, 1x1, 3x3 halving, 1x1, 3x3 halving); conv6 (1x1) mixes the
    concatenation of the outputs of conv1, conv3, conv5 and, for non-first blocks, the stage skip.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        mid_channels: int,
        out_channels: int,
        is_first: bool,
        stride: int,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"SelecSLSBlock stride must be 1 or 2, got {stride}")
        self.is_first = is_first
        half = mid_channels // 2
        self.conv1 = conv_bn_relu(in_channels, mid_channels, 3, stride)
        self.conv2 = conv_bn_relu(mid_channels, mid_channels, 1)
        self.conv3 = conv_bn_relu(mid_channels, half, 3)
        self.conv4 = conv_bn_relu(half, mid_channels, 1)
        self.conv5 = conv_bn_relu(mid_channels, half, 3)
        concat = mid_channels + 2 * half + (0 if is_first else skip_channels)
        self.conv6 = conv_bn_relu(concat, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, in, H, W); skip: (N, skip, H', W') or None -> (N, out, H', W')."""
        d1 = self.conv1(x)
        d2 = self.conv3(self.conv2(d1))
        d3 = self.conv5(self.conv4(d2))
        parts = [d1, d2, d3] if self.is_first or skip is None else [d1, d2, d3, skip]
        return self.conv6(torch.cat(parts, 1))


class SelecSLS(nn.Module):
    """SelecSLS stem + stages. forward(x) returns {"stride4", "stride8", "stride16"} feature maps.

    Input (N, 3, H, W); output maps have spatial size ceil(H / s) x ceil(W / s) for stride s
    (each stride-2 conv uses padding 1, so odd sizes round up).
    """

    def __init__(self, name: str, blocks: list[BlockRow]) -> None:
        super().__init__()
        self.name = name
        self.stem = conv_bn_relu(3, STEM_CHANNELS, 3, 2)
        self.features = nn.Sequential(*[SelecSLSBlock(*row) for row in blocks])
        self.feature_specs, self._taps = _feature_taps(blocks)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        skip: torch.Tensor | None = None
        out: dict[str, torch.Tensor] = {}
        for index, block in enumerate(self.features):
            x = block(x, skip)
            if block.is_first:
                skip = x
            key = self._taps.get(index)
            if key is not None:
                out[key] = x
        return out


def _feature_taps(blocks: list[BlockRow]) -> tuple[dict[str, FeatureSpec], dict[int, str]]:
    """Declare the output of the last block of each stride as that stride's feature map."""
    strides = list(accumulate([2] + [row[5] for row in blocks], operator.mul))[1:]
    last_block = {stride: index for index, stride in enumerate(strides)}  # later blocks win
    specs = {f"stride{s}": FeatureSpec(blocks[i][3], s) for s, i in last_block.items()}
    taps = {i: f"stride{s}" for s, i in last_block.items()}
    return specs, taps
