"""Post-training int8 quantization of a pose network for CPU inference: the demo's
`--precision int8` and `tools/eval.py --int8-calibration FOLDER`.

PyTorch's FX graph-mode quantization with the x86 engine (oneDNN / fbgemm kernels: VNNI and
AMX-INT8 where the CPU has them): per-channel int8 weights, uint8 activations whose ranges are
observed on a few calibration images, BN folded into the convolutions and ReLU fused. Measured on
this project's 2-core AMX CPU (docs/demo.md): the SelecSLS-60 + XNect 2D network at 512x320 runs
1.7-2.1x faster than bf16 (1.35-1.47x faster than bf16 compiled), and a trained SelecSLS-42_B
model kept its AP (0.329 int8, 0.328 fp32 and bf16 on its synthetic val split).

Two kinds of layer stay in float (each runs dequantize -> fp32 -> quantize, a small cost):
- transposed convolutions (the 2D head's stride-16 -> 8 upsampling): the quantized grouped
  ConvTranspose2d gave wrong outputs (heatmaps 46% and PAFs 113% relative error against fp32,
  AP 0.0; 2.6% / 7% with it left in float);
- the layers that write the network's outputs: uint8 heatmaps would come in steps of about
  1/128 of their range, flat plateaus to the sub-pixel peak refinement (AP 0.326 against 0.329
  with them in float, for a layer that costs little).

torch.ao.quantization is deprecated upstream (its successor lives in torchao, which this project
does not depend on) but present in the torch versions we support; where it is missing, int8 is
refused with a clear error and the bf16/fp32 modes remain.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from selecsls.datasets.augment import EvalResize
from selecsls.datasets.coco import to_tensor

ENGINE = "x86"
CALIBRATION_IMAGES = 32  # eval: images read from the calibration folder
CALIBRATION_FRAMES = 16  # demo: first frames of the stream, when no folder is given
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Int8Error(RuntimeError):
    """int8 inference is not possible here (torch without FX quantization, or no x86 engine)."""


# Quantile of the calibration batches' own activation ranges (see _robust_observer). Measured AP
# of a trained SelecSLS-42_B (fp32 0.328) after int8 with 32 calibration images: 0.322 at 0.5,
# 0.329 at 0.75, 0.327 at 0.8, 0.322 at 0.9 and at 1.0 (every batch's extremes).
RANGE_QUANTILE = 0.75


def _fx_quantization():
    """(prepare_fx, convert_fx, qconfig mapping) or Int8Error naming what is missing."""
    try:
        from torch.ao.quantization import QConfig, get_default_qconfig_mapping
        from torch.ao.quantization.observer import MinMaxObserver
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError as err:
        raise Int8Error(
            f"int8 needs torch.ao.quantization.quantize_fx, which torch {torch.__version__} "
            f"lacks ({err}); use --precision bf16 or fp32"
        ) from None
    if ENGINE not in torch.backends.quantized.supported_engines:
        raise Int8Error(
            f"int8 needs torch's {ENGINE!r} quantized engine; this build has "
            f"{', '.join(torch.backends.quantized.supported_engines) or 'none'}"
        )
    mapping = get_default_qconfig_mapping(ENGINE)
    # uint8 activations in 0..127, as torch's own x86 default (reduce_range): it keeps the 16-bit
    # intermediate sums of the AVX2 kernels from saturating
    observer = _robust_observer(MinMaxObserver).with_args(quant_min=0, quant_max=127)
    mapping.set_global(QConfig(activation=observer, weight=mapping.global_qconfig.weight))
    return prepare_fx, convert_fx, mapping


def _robust_observer(base: type) -> type:
    """An activation observer whose range is a quantile (RANGE_QUANTILE) over the calibration
    batches of each batch's own min and max, where torch's default (a histogram over all batches)
    takes the union: one image with activations 100x the usual (seen here: an out-of-range
    letterbox at 384x256 for a network trained at 192x192) then stretches every range so far
    that typical images fall into a few uint8 steps (outputs 100-400% off; 0.7% with this)."""

    class RobustRangeObserver(base):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.batch_ranges: list[tuple[float, float]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.numel() == 0:
                return x
            detached = x.detach()
            self.batch_ranges.append((float(detached.min()), float(detached.max())))
            lows, highs = np.array(self.batch_ranges).T
            low = min(float(np.quantile(lows, 1 - RANGE_QUANTILE)), 0.0)  # 0 stays exact
            high = max(float(np.quantile(highs, RANGE_QUANTILE)), 0.0)
            self.min_val.copy_(torch.tensor(low))
            self.max_val.copy_(torch.tensor(high))
            return x

    return RobustRangeObserver


def quantize_int8(model: nn.Module, calibration: Sequence[torch.Tensor]) -> nn.Module:
    """A CPU int8 copy of `model` (left unchanged), calibrated on `calibration`: a non-empty
    sequence of (N, 3, H, W) float32 ImageNet-normalised batches, as the model takes them.

    Pass the model with its BatchNorm layers (not BN-folded): the quantizer folds them itself and
    fuses Conv + BN + ReLU into one int8 kernel. The result takes and returns float32 tensors
    (the same output dict as the model) at any input size; run it on NCHW input.
    """
    if not calibration:
        raise ValueError("int8 calibration needs at least one image")
    prepare_fx, convert_fx, mapping = _fx_quantization()
    mapping = mapping.set_object_type(nn.ConvTranspose2d, None)  # see the module docstring
    float_model = copy.deepcopy(model).cpu().float().eval()
    for name in output_layers(float_model):
        mapping = mapping.set_module_name(name, None)
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        # torch.ao.quantization's deprecation notice and its observers' notes: not the user's
        warnings.simplefilter("ignore")
        try:
            prepared = prepare_fx(float_model, mapping, (calibration[0].float(),))
        except Exception as err:  # torch.fx raises several types for untraceable code
            raise Int8Error(
                f"int8: the network could not be traced for quantization "
                f"({type(err).__name__}: {str(err)[:200]}); use --precision bf16"
            ) from None
        with torch.no_grad():
            for images in calibration:
                prepared(images.float().contiguous())
        quantized = convert_fx(prepared)
    # Raised by the converted graph at run time, from inside the demo's network thread too:
    # the SLS concatenations requantize their inputs to one scale, which the AP figures above
    # include. One process-wide filter for that message alone (catch_warnings is not
    # thread-safe).
    warnings.filterwarnings("ignore", "All inputs of this cat operator", UserWarning)
    return quantized


def output_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose results reach the model's outputs through no other module
    (e.g. the heads' last convolutions; slicing and dict packing in between are looked through).
    Empty when the model cannot be traced (quantize_int8 then reports the tracing error)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # torch.fx raises several types for untraceable code
        return []
    names: list[str] = []
    pending = [node for node in graph.nodes if node.op == "output"]
    seen = set()
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            names.append(str(node.target))
        elif node.op != "placeholder":
            pending.extend(node.all_input_nodes)
    return sorted(names)


def letterboxed(image_bgr: np.ndarray, input_size: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) BGR uint8 -> (1, 3, h, w) normalised RGB, letterboxed like evaluation."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    no_people = np.zeros((0, 17, 3), np.float32)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    canvas = EvalResize(input_size)(rgb, no_people, mask)[0]
    return to_tensor(canvas).float().unsqueeze(0).contiguous()


def read_calibration_images(
    folder: str | Path, input_size: tuple[int, int], count: int = CALIBRATION_IMAGES
) -> list[torch.Tensor]:
    """Up to `count` images of `folder` (name order, spread over the folder) as (1, 3, H, W)
    network inputs. FileNotFoundError / ValueError name the folder when there is nothing to read."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"int8 calibration folder not found: {folder}")
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(
            f"int8 calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    step = max(1, len(paths) // count)
    images = []
    for path in paths[::step][:count]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:  # an unreadable file is skipped, as the demo skips bad frames
            images.append(letterboxed(image, input_size))
    if not images:
        raise ValueError(f"int8 calibration folder {folder}: none of its images could be read")
    return images


def quantize_for_eval(
    model: nn.Module, folder: str | Path, input_size: tuple[int, int], device: torch.device
) -> nn.Module:
    """`tools/eval.py --int8-calibration FOLDER`: the model quantized on up to
    CALIBRATION_IMAGES images of FOLDER letterboxed to input_size (W, H); CPU only."""
    if device.type != "cpu":
        raise ValueError(f"--int8-calibration runs the network on the CPU (got device {device})")
    return timed_quantize(model, read_calibration_images(folder, input_size), f"images of {folder}")


def timed_quantize(model: nn.Module, images: Sequence[torch.Tensor], label: str) -> nn.Module:
    """quantize_int8, printing "int8: calibrated on N <label> in S s"."""
    start = time.perf_counter()
    quantized = quantize_int8(model, images)
    seconds = time.perf_counter() - start
    print(f"int8: calibrated on {len(images)} {label} in {seconds:.1f} s")
    return quantized


class Int8Runner:
    """The demo's int8 mode: images (1, 3, H, W) float32 -> {name: float32 numpy array}.

    Calibrated up front (`calibrate`, e.g. on a folder) or on the stream itself: until
    `frames` inputs have been seen it runs `fallback` (the bf16/fp32 runner) and keeps the
    inputs, then quantizes on them and runs int8 from the next frame on.
    """

    backend = "pytorch"

    def __init__(self, model: nn.Module, fallback, frames: int = CALIBRATION_FRAMES) -> None:
        _fx_quantization()  # fail at start-up, not at frame 16
        self.model, self.fallback, self.frames = model, fallback, max(1, int(frames))
        self.device = torch.device("cpu")
        self.seen: list[torch.Tensor] = []
        self.quantized: nn.Module | None = None
        self.description = f"pytorch cpu int8 ({ENGINE}), calibrating on the first {frames} frames"

    def calibrate(self, images: Sequence[torch.Tensor], label: str = "images") -> None:
        """Quantize on `images`, printing what was done."""
        self.quantized = timed_quantize(self.model, images, label)
        self.seen = []
        self.description = f"pytorch cpu int8 ({ENGINE})"

    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        if self.quantized is None:
            self.seen.append(images.detach().float().cpu().clone())
            outputs = self.fallback(images)
            if len(self.seen) >= self.frames:
                self.calibrate(self.seen, "frames")
            return outputs
        with torch.inference_mode():
            outputs = self.quantized(images.float().contiguous())
        return {k: v.float().numpy() for k, v in outputs.items()}

    def warm_up(self, input_size: tuple[int, int]) -> float:
        """One zero image through whichever network is current; the seconds it took."""
        start = time.perf_counter()
        images = torch.zeros(1, 3, int(input_size[1]), int(input_size[0]))
        if self.quantized is None:
            self.fallback(images)  # not kept: a blank image would skew the calibration
        else:
            self(images)
        return time.perf_counter() - start
