"""Inference for the demo: frame -> network input -> raw outputs -> people, with two backends.

- TorchRunner: a Model (any pose checkpoint, pruned included) in its fastest mode on the device:
  BN folded, channels_last, bf16 weights on a CPU with native bf16 (AVX-512 BF16 / AMX), fp16
  on CUDA, fp32 otherwise; optionally torch.compile'd.
- OnnxRunner: a file written by `selecsls.tools.export`, run by onnxruntime.
- quantize.Int8Runner (`--precision int8`): a post-training int8 copy of the network, CPU.

Both take the same (1, 3, H, W) ImageNet-normalised RGB input and return {output name: numpy
array}; `PoseEstimator` letterboxes the frame, runs either and decodes people with the 2D codec.
A network with the Stage I 3D branch ("locmaps") gets 3D poses from `demo_pose3d.Pose3DStage`:
Stage II lifting when the checkpoint has a "lifting" head (or `--lifting CKPT` names one), else
the Stage I read-out. Other 3D outputs can be read out through POSE3D_READOUTS.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.backbones.fusion import fuse_bn
from selecsls.datasets.augment import EvalResize, pad_row
from selecsls.datasets.coco import to_tensor
from selecsls.heads import load_model
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.registry import head_of, make_codec2d, skeleton_in
from selecsls.heads.pose2d.slots import has_slots
from selecsls.tools.deploy.frozen import FrozenRunner
from selecsls.tools.engine.amp import cpu_has_bf16
from selecsls.tools.realtime.pose3d import LOCMAPS, Pose3DStage, codec3d_from

# A hook for other 3D heads: an output name -> function(outputs of ONE image {name: (C, h, w)},
# keypoints (P, 17, 3) in original pixels, transform (2, 3) original -> input pixels) returning
# (P, 21, 3) joints in mm (camera axes); when a network's outputs contain such a name (and no
# "locmaps", which Pose3DStage handles), the demo shows the 3D view from it.
POSE3D_READOUTS: dict[str, Callable[[dict, np.ndarray, np.ndarray], np.ndarray]] = {}

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(device: torch.device, precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


class TorchRunner:
    """Run a Model in deploy mode. images (N, 3, H, W) float32 -> {name: float32 numpy array}.

    bf16 / fp16 convert the weights once (not autocast: autocast re-casts every weight on every
    forward, 8-23% of a 512x320 bf16 frame on this project's CPU, for the same numbers on a
    conv/ReLU/concat network). `compile=True` adds torch.compile (inductor, frozen weights,
    static shapes): a 1.18-1.29x faster network on the CPU here after a 7-60 s compile at the first
    frame (`warm_up` does it up front); a compile failure (e.g. no C++ compiler) falls back to the
    uncompiled network with a note. `fuse=False` runs the model as given (cast in place).
    """

    backend = "pytorch"

    def __init__(
        self,
        model: nn.Module,
        device: str = "auto",
        precision: str = "auto",
        fuse: bool = True,
        compile: bool = False,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, precision)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            self.precision, torch.float32
        )
        model = fuse_bn(model) if fuse else model.eval()  # fuse_bn returns an eval-mode copy
        model = model.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        self.eager = model
        self.model = FrozenRunner(model, self.dtype) if compile else model
        self.compiled = compile
        self.description = f"pytorch {self.device.type} {self.precision} channels_last"
        if self.compiled:
            self.description += " compiled"

    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        images = images.to(
            self.device, self.dtype, non_blocking=True, memory_format=torch.channels_last
        )
        with torch.inference_mode():
            outputs = self.model(images)
        return {k: v.float().cpu().numpy() for k, v in outputs.items()}

    def warm_up(self, input_size: tuple[int, int]) -> float:
        """Run one (1, 3, H, W) zero image through the network (compiling it, if asked) and
        return the seconds it took. A failed compile falls back to the eager network."""
        images = torch.zeros(1, 3, int(input_size[1]), int(input_size[0]))
        start = time.perf_counter()
        try:
            self(images)
        except Exception as err:  # inductor errors are many types; the eager model still works
            if not self.compiled:
                raise
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            print(f"note: torch.compile failed ({first}); running uncompiled", file=sys.stderr)
            self.model, self.compiled = self.eager, False
            self.description = self.description.removesuffix(" compiled")
            self(images)
        return time.perf_counter() - start


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
    (P, 21, 3) camera mm or None, the stage times in ms (preprocess, network, decode), the
    root-relative poses3d_relative (P, 21, 3) mm (None from a POSE3D_READOUTS hook) and the 3D
    source ("stage1", "stage2", a hook's output name, or None without 3D)."""

    keypoints: np.ndarray
    scores: np.ndarray
    poses3d: np.ndarray | None = None
    times: dict[str, float] = field(default_factory=dict)
    poses3d_relative: np.ndarray | None = None
    pose3d_source: str | None = None
    points2d: np.ndarray | None = None  # (P, 21, 3) the 3D joints' 2D points (skeleton fitting)


@dataclass
class Inference:
    """One frame's network outputs before decoding: outputs {name: (C, h, w)}, the (2, 3)
    original -> input matrix, the frame's shape and the stage times so far (ms)."""

    outputs: dict[str, np.ndarray]
    matrix: np.ndarray
    frame_shape: tuple[int, ...]
    times: dict[str, float]


class PoseEstimator:
    """frame (H, W, 3) BGR uint8 -> Prediction, via letterbox to `input_size` (W, H).

    pose3d: the 3D stage for a network with "locmaps" (default: the Stage I read-out with the
    2D codec's geometry, created at the first frame that shows such an output)."""

    def __init__(
        self,
        runner: Callable,
        input_size: tuple[int, int],
        codec: Pose2DCodec | None = None,
        pose3d: Pose3DStage | None = None,
    ) -> None:
        self.runner, self.input_size = runner, (int(input_size[0]), int(input_size[1]))
        self.codec = codec or Pose2DCodec()
        self.resize = EvalResize(self.input_size)
        self.canvas = np.empty((self.input_size[1], self.input_size[0], 3), np.uint8)
        self.pad_bgr = pad_row(self.input_size[0])[:, ::-1].copy()  # PAD_VALUE is RGB
        self.pose3d = pose3d
        self.readout3d: str | None = None
        self.has_3d: bool | None = None  # known after the first frame

    @property
    def pose3d_source(self) -> str | None:
        """Where the 3D poses come from: "stage2", "stage1", a hook's output name, or None
        (no 3D, or a hook not seen yet)."""
        if self.pose3d is not None:
            return self.pose3d.source
        return self.readout3d

    @property
    def pose3d_description(self) -> str:
        """For the startup line: where the 3D poses come from."""
        if self.pose3d is not None:
            return self.pose3d.description
        if self.readout3d is not None:
            return f"read-out of {self.readout3d!r}"
        return "none" if self.has_3d is False or not POSE3D_READOUTS else "decided at frame 1"

    def preprocess(self, frame: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """-> ((1, 3, H, W) normalised RGB, (2, 3) original -> input matrix). Same geometry as
        evaluation (EvalResize: scale to fit, pad bottom/right). A runner that `takes_uint8`
        gets the (1, H, W, 3) uint8 RGB canvas instead and normalises it itself; one that
        `takes_frames` gets the frame itself, (1, H0, W0, 3) uint8 BGR, and letterboxes it."""
        height, width = frame.shape[:2]
        matrix = self.resize.matrix(width, height)
        if getattr(self.runner, "takes_frames", False):  # letterboxed on the device (letterbox.py)
            return torch.from_numpy(frame).unsqueeze(0), matrix
        new_w, new_h = self.resize.resized_size(width, height)
        # pad only what the image leaves (bottom, right), by whole rows: broadcasting the pixel
        # tuple over the canvas took 1.7 ms a frame at 512x320, the resize itself 0.02
        self.canvas[new_h:] = self.pad_bgr
        self.canvas[:new_h, new_w:] = self.pad_bgr[new_w:]
        self.canvas[:new_h, :new_w] = cv2.resize(
            frame, (new_w, new_h), interpolation=cv2.INTER_AREA
        )
        rgb = cv2.cvtColor(self.canvas, cv2.COLOR_BGR2RGB)
        if getattr(self.runner, "takes_uint8", False):  # normalised on the device (graph.py)
            return torch.from_numpy(rgb).unsqueeze(0), matrix
        return to_tensor(rgb).unsqueeze(0), matrix

    def __call__(self, frame: np.ndarray) -> Prediction:
        return self.finish(self.infer(frame))

    def infer(self, frame: np.ndarray) -> Inference:
        """Preprocess + network (the part the demo runs in its inference thread)."""
        start = time.perf_counter()
        images, matrix = self.preprocess(frame)
        prepared = time.perf_counter()
        outputs = self.runner(images)
        inferred = time.perf_counter()
        if self.has_3d is None:
            self._inspect(outputs)
        times = {"preprocess": 1e3 * (prepared - start), "network": 1e3 * (inferred - prepared)}
        return Inference({k: v[0] for k, v in outputs.items()}, matrix, frame.shape, times)

    def finish(self, inference: Inference) -> Prediction:
        """Decode an `infer` result into people (2D, and 3D when the network has it)."""
        start = time.perf_counter()
        prediction = self.decode(inference.outputs, inference.matrix, inference.frame_shape)
        prediction.times = {**inference.times, "decode": 1e3 * (time.perf_counter() - start)}
        return prediction

    def decode(self, outputs: dict, matrix: np.ndarray, frame_shape: tuple) -> Prediction:
        """One image's outputs {name: (C, h, w)} -> Prediction (2D people, 3D when present)."""
        if self.has_3d and self.pose3d is not None:  # 2D and 3D people in one decode
            size = (int(frame_shape[1]), int(frame_shape[0]))
            people = self.pose3d(outputs, self.codec, matrix, size)
            return Prediction(
                people["keypoints"],
                people["scores"],
                people["pose3d_camera"],
                poses3d_relative=people["pose3d"],
                pose3d_source=self.pose3d.source,
                points2d=people["points2d"],
            )
        keypoints, scores = self.codec.decode_outputs(outputs, matrix)
        if self.readout3d is None:
            return Prediction(keypoints, scores)
        poses3d = np.asarray(POSE3D_READOUTS[self.readout3d](outputs, keypoints, matrix))
        return Prediction(keypoints, scores, poses3d, pose3d_source=self.readout3d)

    def _inspect(self, outputs: dict[str, np.ndarray]) -> None:
        missing = [k for k in self.codec.output_keys if k not in outputs]
        if missing and not has_slots(outputs):  # slots: the PAF decode's device half (graph.py)
            raise ValueError(
                f"the network has no 2D pose outputs ({', '.join(missing)} missing; it gives "
                f"{', '.join(outputs)}): the demo needs a model with a 2D head (xnect2d, "
                "centre2d) and the codec of that head"
            )
        if LOCMAPS in outputs:
            if self.pose3d is None:
                self.pose3d = Pose3DStage(codec3d_from(None, self.codec))
            self.has_3d = True
            return
        if self.pose3d is not None:
            raise ValueError(
                f"the 3D stage needs the network's {LOCMAPS!r} output (the xnect3d head); "
                f"the network gives {', '.join(outputs)}"
            )
        self.readout3d = next((k for k in outputs if k in POSE3D_READOUTS), None)
        self.has_3d = self.readout3d is not None


def codec_from(settings: Any, model_config: dict | None = None) -> Any:
    """The codec of the model's 2D head (`heads.pose2d.registry.head_of(model_config)`: the PAF
    codec, or the centre + offset codec) from a dict of its fields (unknown keys ignored: a
    training config's codec section holds both codecs' keys); defaults where absent. The
    skeleton is the model's own (its 2D head's config) where the model records one."""
    chosen = dict(settings) if isinstance(settings, dict) else {}
    heads = (model_config or {}).get("heads") or {}
    if any(isinstance(config, dict) and "skeleton" in config for config in heads.values()):
        chosen["skeleton"] = skeleton_in(model_config)
    return make_codec2d(head_of(model_config), chosen)


def load_pose_file(path: str | Path):
    """load_model, with a file that is no checkpoint at all reported as such: torch's weights-only
    unpickler can fail on arbitrary bytes with a bare KeyError/IndexError (e.g. "101")."""
    try:
        return load_model(path)
    except (KeyError, IndexError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None
