"""run.amp / --amp "auto": bf16 only where the hardware computes in it."""

from __future__ import annotations

import pytest
import torch

from selecsls.tools.engine import amp as amp_module
from selecsls.tools.engine.amp import amp_dtype, resolve_amp, slow_amp_note

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(amp_module, "cpu_has_bf16", lambda: native)
    assert resolve_amp("auto", CPU) == ("bf16" if native else "none")
    assert amp_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    # explicit choices are kept as asked, whatever the hardware
    assert [resolve_amp(a, CPU) for a in ("none", "bf16", "fp16")] == ["none", "bf16", "fp16"]
    assert (slow_amp_note("bf16", CPU) is None) == native
    assert slow_amp_note("none", CPU) is None and slow_amp_note("auto", CPU) is None


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_on_cuda_prefers_bf16_then_fp16(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_amp("auto", CUDA) == ("bf16" if bf16 else "fp16")
    assert slow_amp_note("bf16", CUDA) is None  # the CPU note only


def test_unknown_amp_names_the_choices():
    with pytest.raises(ValueError, match="'fp8'.*auto, none, bf16, fp16"):
        resolve_amp("fp8", CPU)


def test_cpu_detection_agrees_with_onednn():
    # oneDNN's own bf16 check (AVX-512 core or newer) holds wherever ours does
    assert not amp_module.cpu_has_bf16() or torch.ops.mkldnn._is_mkldnn_bf16_supported()
