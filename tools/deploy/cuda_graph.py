"""Static-shape CUDA graphs: capture a function once per input shape, then replay it.

At batch 1 a SelecSLS network is ~200 small kernels; launched one by one from Python, their launch
and host overhead, not arithmetic, sets the GPU time (docs/benchmarks.md). A CUDA graph records
the launches once and replays them with one call. The price is static shapes and static memory:
the replay reads its input from, and writes its outputs to, the same device buffers every time,
so a caller copies its input in (`__call__` does) and consumes or copies the outputs before the
next call. Shared by the demo's graph runner (`tools/realtime/graph.py`) and the benchmark's
`graph` mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


class GraphUnavailable(RuntimeError):
    """CUDA graphs need a CUDA device; raised with the reason, for callers that fall back."""


def graph_support(device: torch.device | str) -> str | None:
    """None when CUDA graphs can run on `device`, else why not (for a note or an error)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (got {device.type})"
    if not torch.cuda.is_available():
        return "CUDA graphs need a CUDA device (torch.cuda.is_available() is False)"
    return None


@dataclass
class _Capture:
    graph: Any  # torch.cuda.CUDAGraph
    static_input: Tensor
    outputs: Any


class CapturedCall:
    """fn(images) replayed from a CUDA graph, one graph per (shape, dtype, strides) of images.

    The first call with a new input layout warms fn up on a side stream (`warmup` calls: cuDNN
    picks its algorithms and the caching allocator settles, as capture requires) and captures it;
    later calls copy the input into the captured buffer and replay. The returned outputs are the
    graph's own buffers: valid until the next call. fn runs under inference_mode (no autograd
    state may be captured).
    """

    def __init__(self, fn: Callable[[Tensor], Any], warmup: int = 3) -> None:
        self.fn = fn
        self.warmup = max(1, int(warmup))
        self.captures: dict[tuple, _Capture] = {}

    def __call__(self, images: Tensor) -> Any:
        why = graph_support(images.device)
        if why is not None:
            raise GraphUnavailable(why)
        key = (tuple(images.shape), images.dtype, images.stride(), images.device)
        capture = self.captures.get(key)
        if capture is None:
            capture = self.captures[key] = self._capture(images)
        else:
            capture.static_input.copy_(images, non_blocking=True)
        capture.graph.replay()
        return capture.outputs

    def _capture(self, images: Tensor) -> _Capture:
        static_input = torch.empty_like(images)  # preserve_format: the same strides
        static_input.copy_(images)
        side = torch.cuda.Stream(device=images.device)
        side.wait_stream(torch.cuda.current_stream(images.device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(static_input)
        torch.cuda.current_stream(images.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            outputs = self.fn(static_input)
        return _Capture(graph, static_input, outputs)
