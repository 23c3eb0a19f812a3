"""Count the kernels a call launches, on any device, by watching its aten ops.

At batch 1 on a GPU the small ops of a decode or a network cost their launches (a few
microseconds each, even replayed from a CUDA graph), not their arithmetic. So the number of
kernel-launching ops is the figure to keep down, and it can be counted on the CPU: the same aten
ops run on either device. Views and no-op casts launch nothing and are not counted: an op counts
when it writes into one of its inputs (in-place, `copy_`) or returns a tensor that shares no
storage with its inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _storages(values) -> set[int]:
    return {
        leaf.untyped_storage().data_ptr()
        for leaf in tree_leaves(values)
        if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta"
    }


def _writes(func) -> bool:
    """Whether an op's schema marks an argument or a return as written (in-place, out=)."""
    schema = func._schema
    return any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)


class _KernelCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = _storages(out)
        fresh = bool(outputs) and not (outputs & _storages((args, kwargs)))
        if _writes(func) or fresh:
            self.counts[str(func.overloadpacket).removeprefix("aten.")] += 1
        return out


def count_kernels(fn: Callable[[], object]) -> Counter[str]:
    """{op name: times} of the kernel-launching aten ops one call of `fn` runs.

    Call it after a warm-up: constants a function caches on its first call (`peaks_torch`'s
    device constants) would count once here and never again.
    """
    counter = _KernelCounter()
    with counter:
        fn()
    return counter.counts
