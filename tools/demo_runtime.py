"""Inference for the demo: frame -> network input -> raw outputs -> people, with two backends.

- TorchRunner: a Model (any pose checkpoint, pruned included) in its fastest mode on the device:
  BN folded, channels_last and bf16 autocast on a CPU with native bf16 (AVX-512 BF16 / AMX),
  fp16 autocast on CUDA, fp32 otherwise.
- OnnxRunner: a file written by `selecsls.tools.export`, run by onnxruntime.

Both take the same (1, 3, H, W) ImageNet-normalised RGB input and return {output name: numpy
array}; `PoseEstimator` letterboxes the frame, runs either, decodes people with the 2D codec and,
when the network also predicts 3D, reads the 3D poses out through POSE3D_READOUTS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from selecsls.backbones.checkpoint import CheckpointError, read_checkpoint
from selecsls.backbones.fusion import fuse_bn
from selecsls.datasets.augment import PAD_VALUE, EvalResize
from selecsls.datasets.coco import to_tensor
from selecsls.heads import load_model
from selecsls.heads.codec2d import Pose2DCodec
from selecsls.tools._cli import parse_size

# The hook for 3D: an output name of a 3D head -> function(outputs of ONE image {name: (C, h, w)},
# keypoints (P, 17, 3) in original pixels, transform (2, 3) original -> input pixels) returning
# (P, 21, 3) joints in mm (camera axes). The 3D branch registers its read-out here; when a
# network's outputs contain such a name, the demo shows the 3D view.
POSE3D_READOUTS: dict[str, Callable[[dict, np.ndarray, np.ndarray], np.ndarray]] = {}

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
POSE_OUTPUTS = ("heatmaps", "pafs")


def cpu_has_bf16() -> bool:
    """True where bf16 matmuls/convolutions are native (AVX-512 BF16 or AMX), so bf16 is faster."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(device: torch.device, precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


class TorchRunner:
    """Run a Model in deploy mode. images (N, 3, H, W) float32 -> {name: float32 numpy array}."""

    backend = "pytorch"

    def __init__(
        self, model: nn.Module, device: str = "auto", precision: str = "auto", fuse: bool = True
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, precision)
        model = fuse_bn(model) if fuse else model.eval()  # fuse_bn returns an eval-mode copy
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.description = f"pytorch {self.device.type} {self.precision} channels_last"

    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        images = images.to(self.device, memory_format=torch.channels_last, non_blocking=True)
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
            ),
        ):
            outputs = self.model(images)
        return {k: v.float().cpu().numpy() for k, v in outputs.items()}


def require_onnxruntime():
    """The onnxruntime module, or a clear error naming the extra to install."""
    try:
        import onnxruntime  # optional dependency: only ONNX export and this backend need it
    except ImportError:
        raise ValueError(
            "onnxruntime is not installed: pip install onnx onnxruntime "
            "(or the package's 'export' extra)"
        ) from None
    return onnxruntime


class OnnxRunner:
    """Run an exported .onnx file with onnxruntime (CUDA provider when present, else CPU)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: not a usable ONNX model ({err})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.description = f"onnxruntime {self.session.get_providers()[0]}"

    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        array = np.ascontiguousarray(images.numpy(), np.float32)
        values = self.session.run(self.output_names, {self.input_name: array})
        return dict(zip(self.output_names, values))


@dataclass
class Prediction:
    """People of one frame: keypoints (P, 17, 3) original pixels, scores (P,), poses3d
    (P, 21, 3) mm or None, and the stage times in ms (preprocess, network, decode)."""

    keypoints: np.ndarray
    scores: np.ndarray
    poses3d: np.ndarray | None = None
    times: dict[str, float] = field(default_factory=dict)


class PoseEstimator:
    """frame (H, W, 3) BGR uint8 -> Prediction, via letterbox to `input_size` (W, H)."""

    def __init__(
        self, runner: Callable, input_size: tuple[int, int], codec: Pose2DCodec | None = None
    ) -> None:
        self.runner, self.input_size = runner, (int(input_size[0]), int(input_size[1]))
        self.codec = codec or Pose2DCodec()
        self.resize = EvalResize(self.input_size)
        self.canvas = np.empty((self.input_size[1], self.input_size[0], 3), np.uint8)
        self.readout3d: str | None = None
        self.has_3d: bool | None = None  # known after the first frame

    def preprocess(self, frame: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """-> ((1, 3, H, W) normalised RGB, (2, 3) original -> input matrix). Same geometry as
        evaluation (EvalResize: scale to fit, pad bottom/right)."""
        height, width = frame.shape[:2]
        matrix = self.resize.matrix(width, height)
        scale = float(matrix[0, 0])
        new_w = min(self.input_size[0], max(1, round(width * scale)))
        new_h = min(self.input_size[1], max(1, round(height * scale)))
        self.canvas[:] = PAD_VALUE[::-1]  # PAD_VALUE is RGB; the canvas is BGR until converted
        self.canvas[:new_h, :new_w] = cv2.resize(
            frame, (new_w, new_h), interpolation=cv2.INTER_AREA
        )
        rgb = cv2.cvtColor(self.canvas, cv2.COLOR_BGR2RGB)
        return to_tensor(rgb).unsqueeze(0), matrix

    def __call__(self, frame: np.ndarray) -> Prediction:
        start = time.perf_counter()
        images, matrix = self.preprocess(frame)
        prepared = time.perf_counter()
        outputs = self.runner(images)
        inferred = time.perf_counter()
        if self.has_3d is None:
            self._inspect(outputs)
        keypoints, scores = self.codec.decode(outputs["heatmaps"][0], outputs["pafs"][0], matrix)
        poses3d = None
        if self.readout3d is not None:
            one = {k: v[0] for k, v in outputs.items()}
            poses3d = np.asarray(POSE3D_READOUTS[self.readout3d](one, keypoints, matrix))
        done = time.perf_counter()
        times = {
            "preprocess": 1e3 * (prepared - start),
            "network": 1e3 * (inferred - prepared),
            "decode": 1e3 * (done - inferred),
        }
        return Prediction(keypoints, scores, poses3d, times)

    def _inspect(self, outputs: dict[str, np.ndarray]) -> None:
        missing = [k for k in POSE_OUTPUTS if k not in outputs]
        if missing:
            raise ValueError(
                f"the network has no 2D pose outputs ({', '.join(missing)} missing; it gives "
                f"{', '.join(outputs)}): the demo needs a model with the xnect2d head"
            )
        self.readout3d = next((k for k in outputs if k in POSE3D_READOUTS), None)
        self.has_3d = self.readout3d is not None


def codec_from(settings: Any) -> Pose2DCodec:
    """A codec from a dict of its fields (unknown keys ignored: a training config's codec
    section may hold more, e.g. the loss weights); defaults where absent."""
    if not isinstance(settings, dict):
        return Pose2DCodec()
    names = {f.name for f in fields(Pose2DCodec)}
    return Pose2DCodec(**{k: v for k, v in settings.items() if k in names})


def load_pose_file(path: str | Path):
    """load_model, with a file that is no checkpoint at all reported as such: torch's weights-only
    unpickler can fail on arbitrary bytes with a bare KeyError/IndexError (e.g. "101")."""
    try:
        return load_model(path)
    except (KeyError, IndexError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None


def load_torch_estimator(
    checkpoint: str, input_size: tuple[int, int], device: str = "auto", precision: str = "auto"
) -> PoseEstimator:
    """A PoseEstimator for a pose checkpoint of ours (codec settings from its experiment config
    when it carries one)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{checkpoint} is an ONNX file: add --backend onnxruntime")
    model = load_pose_file(path)
    heads = (model.config or {}).get("heads") or {}
    if "xnect2d" not in heads:
        raise CheckpointError(
            f"{checkpoint}: the model has no 2D pose head (heads: {', '.join(heads) or 'none'}); "
            "the demo needs a checkpoint with the xnect2d head"
        )
    experiment = read_checkpoint(path).get("experiment") or {}
    codec = codec_from(experiment.get("codec") if isinstance(experiment, dict) else None)
    return PoseEstimator(TorchRunner(model, device, precision), input_size, codec)


def load_onnx_estimator(path: str, input_size: tuple[int, int] | None) -> PoseEstimator:
    """A PoseEstimator for an exported ONNX file; input size and codec default to its metadata."""
    runner = OnnxRunner(path)
    if input_size is None:
        input_size = parse_size(runner.metadata.get("input_size", "512x320"))
    codec = codec_from(json.loads(runner.metadata.get("codec", "null")))
    return PoseEstimator(runner, input_size, codec)
