"""Mixed precision choices (`run.amp`, `tools/eval.py --amp`) and where each one is fast.

bf16 is the fast path only where the hardware computes in it: CPUs with AVX-512 BF16 or AMX
(oneDNN's bf16 convolutions) and CUDA devices with bf16 support. Elsewhere PyTorch still runs
bf16 autocast, but through slow fallback kernels: on an AVX2-only CPU (AMD EPYC, Zen 1) a
training step of the pose quickstart network took 8.8 s in bf16 against 1.1 s in fp32
(docs/benchmarks.md). `auto` picks for the machine the run lands on, so one config suits a
laptop, an AMX server and a GPU.
"""

from __future__ import annotations

import torch

AMP_CHOICES = ("auto", "none", "bf16", "fp16")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """True where bf16 matmuls/convolutions are native (AVX-512 BF16 or AMX), so bf16 is faster."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_amp(amp: str, device: torch.device) -> str:
    """`amp` with "auto" replaced: bf16 on a CPU with native bf16 or a CUDA device supporting
    it, fp16 on other CUDA devices, none (fp32) otherwise. ValueError for an unknown name."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"unknown amp {amp!r}; valid: {', '.join(AMP_CHOICES)}")
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "none"


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `amp` on `device` (None: fp32, autocast off)."""
    return AMP_DTYPES[resolve_amp(amp, device)]


def slow_amp_note(amp: str, device: torch.device) -> str | None:
    """A warning when an explicit bf16 runs on a CPU without native bf16, else None."""
    if amp == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        return (
            "run.amp=bf16 on a CPU without AVX-512 BF16 / AMX: bf16 runs through slow fallback "
            "kernels here (about 8x slower training steps than fp32 on an AVX2 CPU); "
            "run.amp=auto picks fp32 on this machine"
        )
    return None
