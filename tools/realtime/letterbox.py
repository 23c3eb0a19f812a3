"""The demo's letterbox on the device: raw BGR frames in, the network's RGB canvas out.

The host letterbox (`PoseEstimator.preprocess`: cv2.resize with INTER_AREA, pad bottom/right,
BGR -> RGB) costs the host a resize and a canvas per frame, and on a GPU machine it is one more
host stage in the pipeline. Here the same resize is two matmuls with fixed weight matrices,
one per axis (cv2's INTER_AREA is separable), so it runs on the device and fits in a CUDA graph
(static shapes: one capture per frame size, as a video has). The weights follow cv2's rules:
true area averaging when both axes shrink, else cv2's area-mode bilinear. The canvas it gives
equals the host's to within one grey level (float rounding against cv2's fixed point): that is
what the CPU tests check.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from selecsls.datasets.augment import PAD_VALUE, EvalResize


def area_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64: output pixel i averages input [i * s, (i + 1) * s), s =
    in_size / out_size >= 1, each input pixel weighted by the length it overlaps."""
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        start, end = i * scale, min((i + 1) * scale, in_size)
        for j in range(int(math.floor(start)), int(math.ceil(end))):
            weights[i, j] = min(end, j + 1) - max(start, j)
    return weights / scale


def area_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64: cv2's INTER_AREA when an axis does not shrink on both: two
    taps per output pixel, at floor(i * s) and the next, with cv2's area-mode fraction."""
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        source = int(math.floor(i * scale))
        fraction = (i + 1) - (source + 1) / scale
        fraction = 0.0 if fraction <= 0 else fraction - math.floor(fraction)
        if source >= in_size - 1:
            source, fraction = in_size - 1, 0.0
        weights[i, source] += 1.0 - fraction
        if fraction:
            weights[i, source + 1] += fraction
    return weights


def resize_weights(in_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """cv2.resize(INTER_AREA) from (W, H) in_size to (W, H) out_size as (rows (h, H), columns
    (w, W)) weight matrices: out = rows @ image @ columns.T per channel."""
    shrinks = in_size[0] >= out_size[0] and in_size[1] >= out_size[1]
    weights = area_weights if shrinks else area_bilinear_weights
    return weights(in_size[1], out_size[1]), weights(in_size[0], out_size[0])


class DeviceLetterbox(nn.Module):
    """frames (N, H, W, 3) uint8 BGR, any H, W -> (N, h, w, 3) uint8 RGB canvas at `input_size`
    (w, h): EvalResize's geometry (scale to fit, pad bottom/right with PAD_VALUE), the host
    letterbox's pixels to within one grey level.

    The weight matrices are made on the first frame of each size and kept (on the frames'
    device), so a CUDA graph captured after a warm-up call copies nothing from the host."""

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.resize = EvalResize(self.input_size)
        self.register_buffer("pad", torch.tensor(PAD_VALUE, dtype=torch.uint8), persistent=False)
        self.weights: dict[tuple, tuple[Tensor, Tensor]] = {}

    def forward(self, frames: Tensor) -> Tensor:
        n, height, width, _ = frames.shape
        rows, columns = self._weights(height, width, frames.device)
        new_h, new_w = rows.shape[0], columns.shape[1]
        x = torch.matmul(rows, frames.float().reshape(n, height, width * 3))  # (N, h', W*3)
        x = x.view(n, new_h, width, 3).transpose(2, 3)  # (N, h', 3, W)
        x = torch.matmul(x, columns).transpose(2, 3)  # (N, h', w', 3)
        # uint8 as cv2 gives it (halves round up, as its integer averages do), BGR -> RGB
        resized = x.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8).flip(3)
        canvas = self.pad.expand(n, self.input_size[1], self.input_size[0], 3).clone()
        canvas[:, :new_h, :new_w] = resized
        return canvas

    def _weights(self, height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(rows (h', H), columns transposed (W, w')) float32 on `device`, cached per size."""
        key = (height, width, device)
        if key not in self.weights:
            new_size = self.resize.resized_size(width, height)
            rows, columns = resize_weights((width, height), new_size)
            self.weights[key] = (
                torch.from_numpy(rows).float().to(device),
                torch.from_numpy(columns.T.copy()).float().to(device),
            )
        return self.weights[key]
