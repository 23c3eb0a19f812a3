"""The fastest inference path of a BN-folded network on the CPU: torch.compile with inductor's
freezing, shared by the demo (`--compile`) and the benchmark (`frozen` mode).

Freezing turns the weights into constants, so inductor prepacks them for oneDNN and fuses the
ReLUs into the convolutions (the eager path reorders weights on every call). It must be set in
inductor's config while the compiled network first runs (that is when it compiles):
`torch.compile(options={"freezing": True})` left plain convolutions in place (torch 2.14, seen in
the profiler), and setting the config for good would change every later compile in the process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def freezing() -> Iterator[None]:
    """Context in which a torch.compile'd module runs (and compiles) with frozen weights."""
    from torch._inductor import config

    # Inductor's C++ build logs "No CUDA runtime is found" on every CPU-only machine: not news.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with config.patch(freezing=True):
            yield
    finally:
        logger.setLevel(level)


class FrozenRunner:
    """images -> module(images) with the weights in `dtype`, compiled with frozen weights (static
    shapes: one graph per input shape, compiled at its first call). Call it under no_grad or
    inference_mode: inductor freezes only inference graphs."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self.compiled = torch.compile(module.to(dtype).eval(), dynamic=False)

    def __call__(self, images: torch.Tensor):
        with freezing():
            return self.compiled(images.to(self.dtype))
