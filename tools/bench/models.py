"""Models and modes for `selecsls.tools.benchmark`.

A model name is one of: a SelecSLS configuration (any spelling `canonical_name` accepts, built as
the seed's classifier), a baseline from `BASELINES`, `timm:<any timm model>`, `pose:<backbone>`
(the backbone with the XNect 2D head, `pose_models.py`), a published weight
name, or a checkpoint path (`load_model`, so pruned checkpoints work too). A mode turns a model in
eval mode into the callable that gets timed.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from selecsls.backbones import BACKBONES, canonical_name
from selecsls.backbones.fusion import fuse_bn
from selecsls.backbones.hub import is_published
from selecsls.heads import Model, build_classifier, load_model
from selecsls.tools.bench.pose_models import POSE_PREFIX, pose_builder
from selecsls.tools.deploy.cuda_graph import CapturedCall, graph_support
from selecsls.tools.deploy.frozen import FrozenRunner
from selecsls.tools.deploy.quantize import Int8Error, quantize_int8

# Mode name -> what it does; `deploy` and everything after it run the BN-folded, channels_last copy.
MODES: dict[str, str] = {
    "eager": "fp32, NCHW, BN unfolded (as the seed measured)",
    "deploy": "BN folded into the convs, channels_last, fp32",
    "bf16": "deploy + torch.autocast(bfloat16)",
    "fp16": "deploy + torch.autocast(float16) (meant for CUDA)",
    "compile": "bf16 + torch.compile (inductor; compiled during warm-up)",
    "frozen": "deploy with bf16 weights (fp16 on CUDA) + torch.compile with inductor freezing "
    "(prepacked oneDNN convolutions, fused ReLUs; the demo's --compile)",
    "graph": "deploy with fp16 weights (the demo's CUDA precision), the forward pass replayed "
    "from a CUDA graph captured per input shape (CUDA only; the demo's --graph)",
    "int8": "post-training int8 (tools/deploy/quantize.py, x86 engine; CPU only), calibrated on 2 "
    "random 224x224 images (speed does not depend on the ranges; the demo's --precision int8)",
}
# The modes that compute in bf16 on the CPU: fast only with AVX-512 BF16 / AMX.
BF16_MODES = ("bf16", "compile", "frozen")


class BenchmarkError(ValueError):
    """A user mistake (bad model name, missing file, ...): reported without a traceback."""


class OptionalMissing(BenchmarkError):
    """The model needs an optional package (timm) that is not installed: skipped with a note."""


def _torchvision(name: str) -> nn.Module:
    import torchvision.models

    return getattr(torchvision.models, name)(weights=None)


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


# Baseline name -> constructor (random weights: timing and memory do not depend on them).
BASELINES: dict[str, Callable[[], nn.Module]] = {
    "resnet50": partial(_torchvision, "resnet50"),
    "timm:vovnet39a": partial(_timm, "vovnet39a"),
    "timm:selecsls42b": partial(_timm, "selecsls42b"),
    "timm:selecsls60": partial(_timm, "selecsls60"),
    "timm:selecsls60b": partial(_timm, "selecsls60b"),
}


@dataclass
class ModelEntry:
    """A resolved model name: `label` names its table row, `build()` returns a fresh module."""

    label: str
    build: Callable[[], nn.Module]


def timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def valid_names() -> str:
    return (
        f"SelecSLS configs ({', '.join(BACKBONES)}), baselines ({', '.join(BASELINES)}), "
        "timm:<timm model name>, pose:<SelecSLS config or resnet50> (with the XNect 2D head), "
        "a published weight name, or a checkpoint path"
    )


def resolve_model(name: str) -> ModelEntry:
    """Map a command-line model name to a ModelEntry; BenchmarkError names the valid choices."""
    if name.startswith(POSE_PREFIX):
        try:
            return ModelEntry(*pose_builder(name))
        except ValueError as err:
            raise BenchmarkError(f"{name}: {err}") from None
    if name.startswith("timm:"):
        if not timm_available():
            raise OptionalMissing(f"{name}: timm is not installed (pip install timm)")
        import timm

        if name not in BASELINES and name[5:] not in timm.list_models():
            raise BenchmarkError(f"unknown timm model {name[5:]!r} (see timm.list_models())")
        return ModelEntry(name, BASELINES.get(name) or partial(_timm, name[5:]))
    if name in BASELINES:
        return ModelEntry(name, BASELINES[name])
    try:
        ours = canonical_name(name)
    except ValueError:
        ours = None
    if ours is not None:
        return ModelEntry(ours, partial(build_classifier, ours))
    if is_published(name):
        return ModelEntry(name, partial(load_model, name))
    path = Path(name)
    if path.suffix in (".pth", ".pt", ".tar") or path.exists():
        if not path.is_file():
            raise BenchmarkError(f"checkpoint file not found: {path}")
        return ModelEntry(path.stem, partial(load_model, path))
    raise BenchmarkError(f"unknown model {name!r}; valid: {valid_names()}")


def fold_bn_generic(model: nn.Module) -> tuple[nn.Module, int]:
    """Fold each BatchNorm2d into the Conv2d registered just before it in the same parent (a copy
    in eval mode). Works for torchvision ResNets and timm's conv-BN stacks; the caller verifies the
    result numerically because registration order need not be data-flow order.

    timm's BatchNormAct2d (a BN with its activation inside) keeps its drop and act layers.
    Returns (folded copy, number of BNs folded).
    """
    folded = copy.deepcopy(model).eval()
    count = 0
    for parent in list(folded.modules()):
        names = list(parent._modules)
        for prev, cur in zip(names, names[1:]):
            conv, bn = parent._modules[prev], parent._modules[cur]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.num_features != conv.out_channels or bn.running_mean is None:
                continue
            parent._modules[prev] = fuse_conv_bn_eval(conv, bn)
            rest = [
                getattr(bn, a)
                for a in ("drop", "act")
                if isinstance(getattr(bn, a, None), nn.Module)
            ]
            parent._modules[cur] = nn.Sequential(*rest) if rest else nn.Identity()
            count += 1
    return folded, count


@torch.no_grad()
def check_folding(model: nn.Module, size: int = 64) -> None:
    """Fold a copy whose BN statistics are randomised (so folding is far from the identity) and
    compare its output with the unfolded copy; raise BenchmarkError on a mismatch."""
    probe = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(0)
    for m in probe.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            if m.affine:
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
    x = torch.randn(1, 3, size, size, generator=gen)
    want, got = _first_tensor(probe(x)), _first_tensor(fold_bn_generic(probe)[0](x))
    err = (want - got).abs().max() / want.abs().max().clamp_min(1e-12)
    if not err < 1e-3:
        raise BenchmarkError(f"BN folding changed the output of {type(model).__name__} ({err:.2e})")


def _first_tensor(out: torch.Tensor | dict) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else next(iter(out.values()))


def fold_bn(model: nn.Module) -> tuple[nn.Module, str]:
    """A BN-folded eval copy and a short note on how it was folded."""
    if isinstance(model, Model):
        return fuse_bn(model), "selecsls fuse_bn"
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    check_folding(model)
    folded, count = fold_bn_generic(model)
    return folded, f"{count} of {before} BN folded"


class Autocast(nn.Module):
    """Runs `model` under torch.autocast; a module so that torch.compile sees the whole thing."""

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, images: torch.Tensor):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(images)


@dataclass
class Prepared:
    """A timed callable: `runner(images)`; images are fed channels_last when `channels_last`."""

    runner: Callable
    channels_last: bool
    note: str


def prepare(model: nn.Module, mode: str, device: torch.device, folded=None) -> Prepared:
    """Turn an eval-mode `model` into the runner of `mode` on `device`. `folded` is an optional
    (module, note) pair from an earlier `fold_bn(model)`, so several modes share one copy."""
    if mode not in MODES:
        raise BenchmarkError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode == "eager":
        return Prepared(model.eval().to(device), False, "")
    if mode == "int8":
        if device.type != "cpu":
            raise BenchmarkError("mode int8 runs on the CPU only")
        generator = torch.Generator().manual_seed(0)
        images = [torch.randn(1, 3, 224, 224, generator=generator) for _ in range(2)]
        try:
            return Prepared(quantize_int8(model.eval(), images), False, "")
        except Int8Error as err:
            raise BenchmarkError(str(err)) from None
    module, note = folded or fold_bn(model)
    module = module.to(device, memory_format=torch.channels_last)
    if mode == "deploy":
        return Prepared(module, True, note)
    if mode == "frozen":
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return Prepared(FrozenRunner(module, dtype), True, note)
    if mode == "graph":
        return Prepared(graph_runner(module, device), True, note)
    dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    runner = Autocast(module, device.type, dtype)
    if mode == "compile":
        # Static shapes: one specialised graph per (size, batch), compiled during warm-up.
        runner = torch.compile(runner, dynamic=False)
    return Prepared(runner, True, note)


def graph_runner(module: nn.Module, device: torch.device) -> Callable:
    """The `graph` mode: fp16 weights, the whole forward pass captured in a CUDA graph."""
    why = graph_support(device)
    if why is not None:
        raise BenchmarkError(f"mode graph: {why}")
    half = copy.deepcopy(module).to(torch.float16)  # other modes share `module`
    return CapturedCall(lambda images: half(images.to(torch.float16)))
