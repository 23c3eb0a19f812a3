"""Loading the demo's estimator: a pose checkpoint (PyTorch) or an exported ONNX file, with the
3D stage its network calls for (`demo_pose3d`): Stage II lifting when the checkpoint has a
"lifting" head or `--lifting CKPT` names one, else the Stage I location-map read-out, and no 3D
for a 2D-only model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from selecsls.backbones.checkpoint import CheckpointError, read_checkpoint
from selecsls.tools._cli import parse_size
from selecsls.tools.deploy.precision import describe_choice, fastest_cpu_precision
from selecsls.tools.deploy.quantize import Int8Runner, read_calibration_images
from selecsls.tools.realtime.graph import GraphRunner, use_device_letterbox, use_graph
from selecsls.tools.realtime.pose3d import (
    LIFTING_KEY,
    LOCMAPS,
    Pose3DStage,
    codec3d_from,
    cpu_lifting,
    lifting_from_text,
)
from selecsls.tools.realtime.runtime import (
    PRECISIONS,
    OnnxRunner,
    PoseEstimator,
    TorchRunner,
    codec_from,
    load_pose_file,
)

POSE_HEADS = ("xnect2d", "centre2d", "xnect3d", "centre3d")  # heads with 2D pose outputs
DEMO_PRECISIONS = (*PRECISIONS, "int8")  # int8: CPU only, post-training quantized (quantize.py)


def load_lifting(checkpoint: str | Path) -> nn.Module:
    """The Stage II network of a checkpoint with a "lifting" head (`--lifting`), fp32 on the CPU."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"--lifting: checkpoint not found: {checkpoint}")
    model = load_pose_file(path)
    net = cpu_lifting(model)
    if net is None:
        heads = (model.config or {}).get("heads") or {}
        raise CheckpointError(
            f"--lifting {checkpoint}: the model has no lifting head (heads: "
            f"{', '.join(heads) or 'none'}); train one with the lifting task"
        )
    return net


def load_torch_estimator(
    checkpoint: str,
    input_size: tuple[int, int],
    device: str = "auto",
    precision: str = "auto",
    lifting: str | None = None,
    compile: bool = False,
    calibration: str | None = None,
    graph: str = "auto",
    letterbox: str = "auto",
) -> PoseEstimator:
    """A PoseEstimator for a pose checkpoint of ours (codec settings from its experiment config
    when it carries one). A Stage I model (xnect3d head) gets 3D poses from its own Stage II
    (lifting head) when it has one, else from the location-map read-out; `lifting` names a
    checkpoint whose Stage II is used instead. precision "int8" quantizes the network for the
    CPU, calibrated on the images of the folder `calibration`, else on the first frames.
    graph "auto" (on CUDA) or "on": the CUDA graph runner with the decode's peaks and limb
    scores on the device (`graph.GraphRunner`; without CUDA it runs eagerly, with a note).
    letterbox "auto" (with the graph runner on CUDA) or "device": frames are letterboxed in the
    graph too (`letterbox.DeviceLetterbox`), "host": by cv2 on the host."""
    check_precision(precision, device, compile, calibration)
    graphed = use_graph(graph, device, precision, compile)
    on_device = use_device_letterbox(letterbox, graphed, device)
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{checkpoint} is an ONNX file: add --backend onnxruntime")
    model = load_pose_file(path)
    heads = (model.config or {}).get("heads") or {}
    if not any(name in heads for name in POSE_HEADS):
        raise CheckpointError(
            f"{checkpoint}: the model has no 2D pose head (heads: {', '.join(heads) or 'none'}); "
            f"the demo needs a checkpoint with one of the heads {', '.join(POSE_HEADS)}"
        )
    experiment = read_checkpoint(path).get("experiment") or {}
    settings = experiment.get("codec") if isinstance(experiment, dict) else None
    codec = codec_from(settings, model.config)
    pose3d = None
    if "xnect3d" in heads or "centre3d" in heads:
        net = load_lifting(lifting) if lifting else cpu_lifting(model)
        pose3d = Pose3DStage(codec3d_from(settings, codec), net)
    elif lifting:
        raise ValueError(
            f"--lifting {lifting}: {checkpoint} has no Stage I 3D branch (heads: "
            f"{', '.join(heads)}); Stage II needs its location maps (the xnect3d head)"
        )
    prepare_device(device)
    if precision == "auto" and on_cpu(device) and not compile and not graphed:
        precision = measured_precision(model, input_size)
    if precision == "int8":
        runner = Int8Runner(model, TorchRunner(model, "cpu", "auto"))
        if calibration:
            runner.calibrate(
                read_calibration_images(calibration, input_size), f"images of {calibration}"
            )
    elif graphed:
        runner = GraphRunner(
            model, codec, device, precision, letterbox=input_size if on_device else None
        )
        if runner.note:
            print(f"note: --graph on: {runner.note}; the same step runs eagerly", file=sys.stderr)
    else:
        runner = TorchRunner(model, device, precision, compile=compile)
    return PoseEstimator(runner, input_size, codec, pose3d)


def prepare_device(device: str) -> None:
    """On CUDA, let cuDNN pick each convolution's fastest algorithm (`cudnn.benchmark`): the
    demo's input size is fixed, so the search runs once, in the warm-up or the graph capture,
    and every frame after gains. The GPU benchmarks are measured with it on, as the demo now
    runs. The CPU is left as it is."""
    if not on_cpu(device):
        torch.backends.cudnn.benchmark = True


def on_cpu(device: str) -> bool:
    """Whether the demo's `--device` runs the network on the CPU."""
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def measured_precision(model: nn.Module, input_size: tuple[int, int]) -> str:
    """`--precision auto` on the CPU: the fastest precision for this model and input size,
    measured on this CPU once (a few seconds) and cached (`tools/deploy/precision.py`)."""
    choice, timings, cached = fastest_cpu_precision(model, input_size)
    print(describe_choice(choice, timings, cached))
    return choice


def check_precision(precision: str, device: str, compile: bool, calibration: str | None) -> None:
    """ValueError for a precision the demo lacks or one that contradicts the other options."""
    if precision not in DEMO_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(DEMO_PRECISIONS)}")
    if precision != "int8":
        if calibration:
            raise ValueError("--calibration is for --precision int8")
        return
    if device not in ("auto", "cpu"):
        raise ValueError(f"--precision int8 runs on the CPU only (got --device {device})")
    if compile:
        raise ValueError("--compile is for the bf16/fp32 modes; int8 runs quantized kernels")


def load_onnx_estimator(
    path: str, input_size: tuple[int, int] | None, lifting: str | None = None
) -> PoseEstimator:
    """A PoseEstimator for an exported ONNX file; input size and codec default to its metadata.
    The graph is Stage I; Stage II (PyTorch, CPU) comes from `lifting` (a .pt checkpoint) when
    given, else from the file's metadata (exports of Stage I + II checkpoints carry it); without
    either a Stage I file shows the location-map read-out."""
    runner = OnnxRunner(path)
    if input_size is None:
        input_size = parse_size(runner.metadata.get("input_size", "512x320"))
    settings = json.loads(runner.metadata.get("codec", "null"))
    codec = codec_from(settings, json.loads(runner.metadata.get("selecsls_config", "null")))
    pose3d = None
    if LOCMAPS in runner.output_names:
        net = None
        if lifting:
            net = load_lifting(lifting)
        elif LIFTING_KEY in runner.metadata:
            net = lifting_from_text(runner.metadata[LIFTING_KEY], path)
        elif "lifting" in onnx_heads(runner):
            print(
                f"note: {path} comes from a Stage I + II checkpoint but holds no Stage II (an "
                "older export); add --lifting CHECKPOINT (the .pt it came from) for Stage II",
                file=sys.stderr,
            )
        pose3d = Pose3DStage(codec3d_from(settings, codec), net)
    elif lifting:
        raise ValueError(
            f"--lifting {lifting}: {path} has no {LOCMAPS!r} output (outputs: "
            f"{', '.join(runner.output_names)}); Stage II needs Stage I's location maps"
        )
    return PoseEstimator(runner, input_size, codec, pose3d)


def onnx_heads(runner: OnnxRunner) -> dict:
    """The heads of the model config an export recorded in its metadata ({} when absent)."""
    try:
        config = json.loads(runner.metadata.get("selecsls_config", "null"))
    except ValueError:
        return {}
    heads = config.get("heads") if isinstance(config, dict) else None
    return heads if isinstance(heads, dict) else {}
