"""The GPU demo's runner: normalisation, network, peak finding and limb scoring in one CUDA graph.

Per frame the host uploads the letterboxed uint8 RGB canvas (pinned memory, 4x less than float
input) and replays one graph: normalise on the device, the BN-folded channels_last network in
fp16, then the PAF decode's static-shape half (`heads.pose2d.slots`: top-K peaks per keypoint
with sub-cell refinement, every slot pair of every limb scored on the PAFs). Only the slots (and
outputs the host still needs, e.g. Stage I location maps) come back, into pinned buffers; the
host does the greedy person assembly. `submit` returns once the work is queued, so a caller can
assemble frame t while the GPU runs frame t + 1 (the demo's pipeline thread does exactly that).
With `letterbox` the host uploads the raw frame instead and the graph letterboxes it first
(`letterbox.py`: the resize as two matmuls), so the host's only per-frame work before the
upload is a copy into pinned memory.

Without CUDA the same step runs eagerly (the graph is what needs CUDA, not the decode): that is
how the CPU tests check that the device-side decode gives the numpy decoder's people.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from selecsls.datasets.coco import IMAGENET_MEAN, IMAGENET_STD
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.slots import slot_outputs
from selecsls.tools.deploy.cuda_graph import CapturedCall, graph_support
from selecsls.tools.realtime.letterbox import DeviceLetterbox
from selecsls.tools.realtime.runtime import TorchRunner

GRAPH_CHOICES = ("auto", "on", "off")
LETTERBOX_CHOICES = ("auto", "host", "device")
MAPS_2D = ("heatmaps", "pafs")  # not sent to the host when the slots stand in for them


class PoseStep(nn.Module):
    """images -> the network's outputs plus, for the PAF codec, its slot outputs (N, ...).

    images: (N, H, W, 3) uint8 RGB (normalised here, with the ImageNet statistics `to_tensor`
    uses) or (N, 3, H, W) float already normalised. The network runs in `dtype`, channels_last.
    letterbox (W, H): images are raw (N, H0, W0, 3) uint8 BGR frames, letterboxed here first.
    """

    def __init__(
        self,
        model: nn.Module,
        codec,
        dtype: torch.dtype,
        letterbox: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.codec, self.dtype = model, codec, dtype
        self.letterbox = DeviceLetterbox(letterbox) if letterbox else None
        self.register_buffer("mean", 255 * torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.slots = isinstance(codec, Pose2DCodec)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if self.letterbox is not None:
            images = self.letterbox(images)
        if images.dtype == torch.uint8:
            # NHWC memory seen as NCHW: a channels_last tensor, which the arithmetic keeps
            x = ((images.permute(0, 3, 1, 2).float() - self.mean) / self.std).to(self.dtype)
        else:
            x = images.to(self.dtype, memory_format=torch.channels_last)
        outputs = dict(self.model(x))
        if self.slots:
            outputs.update(slot_outputs(outputs["heatmaps"], outputs["pafs"], self.codec))
        return outputs


@dataclass
class Pending:
    """A submitted batch: its host-side outputs (being filled when `event` is set)."""

    outputs: dict[str, Tensor]
    event: torch.cuda.Event | None


class GraphRunner:
    """Run a pose Model with the device-side decode, captured in a CUDA graph on CUDA.

    images (N, H, W, 3) uint8 RGB (`takes_uint8`: PoseEstimator hands over its canvas) or
    (N, 3, H, W) normalised float -> {name: numpy array}: the slots and every non-2D-map output
    for the PAF codec (whose `decode_outputs` then only assembles people), all outputs otherwise.
    graph=False, or no CUDA, runs the same step eagerly; `note` then says why when graph was asked.
    letterbox (W, H): take raw frames (N, H0, W0, 3) uint8 BGR (`takes_frames`: PoseEstimator
    hands over the frame itself) and letterbox them to that input size on the device.
    """

    backend = "pytorch"
    takes_uint8 = True

    def __init__(
        self,
        model: nn.Module,
        codec,
        device: str = "auto",
        precision: str = "auto",
        graph: bool = True,
        letterbox: tuple[int, int] | None = None,
    ) -> None:
        base = TorchRunner(model, device, precision)  # BN folded, cast, channels_last
        self.device, self.precision, self.dtype = base.device, base.precision, base.dtype
        self.step = PoseStep(base.eager, codec, self.dtype, letterbox).to(self.device)
        self.takes_frames = letterbox is not None
        why = graph_support(self.device)
        self.captured = CapturedCall(self.step) if graph and why is None else None
        self.note = why if graph and why else None
        self.description = base.description
        self.description += " cuda-graph" if self.captured else ""
        self.description += " device-decode" if self.step.slots else ""
        self.description += " device-letterbox" if self.takes_frames else ""

    def __call__(self, images: Tensor) -> dict[str, np.ndarray]:
        return self.collect(self.submit(images))

    def submit(self, images: Tensor) -> Pending:
        """Queue one batch: upload (pinned), replay (or run), download into pinned buffers."""
        cuda = self.device.type == "cuda"
        if cuda:
            pinned = torch.empty_like(images, pin_memory=True)
            pinned.copy_(images)
            images = pinned.to(self.device, non_blocking=True)
        else:
            images = images.to(self.device)
        with torch.inference_mode():
            outputs = self.captured(images) if self.captured else self.step(images)
            wanted = {k: v for k, v in outputs.items() if k not in MAPS_2D or not self.step.slots}
            if not cuda:
                return Pending(wanted, None)
            host = {}
            for name, value in wanted.items():
                # the caching host allocator hands back the same pinned blocks frame after frame
                host[name] = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                host[name].copy_(value, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        return Pending(host, event)

    def collect(self, pending: Pending) -> dict[str, np.ndarray]:
        """Wait for a submitted batch (the GIL is released meanwhile) -> {name: numpy}."""
        if pending.event is not None:
            pending.event.synchronize()
        return {name: _to_numpy(value) for name, value in pending.outputs.items()}

    def warm_up(self, input_size: tuple[int, int]) -> float:
        """Capture the graph for (1, H, W, 3) frames up front; the seconds it took. (A runner
        that letterboxes captures each other frame size at its first frame.)"""
        start = time.perf_counter()
        self(torch.zeros(1, int(input_size[1]), int(input_size[0]), 3, dtype=torch.uint8))
        return time.perf_counter() - start


def _to_numpy(value: Tensor) -> np.ndarray:
    """Host tensor -> numpy (floats as float32, as the other runners return them). A view, no
    copy: every frame's host buffers are its own (see `submit`)."""
    value = value.detach().cpu()
    return (value.float() if value.is_floating_point() else value).numpy()


def runs_on_cuda(device: str) -> bool:
    """Whether the demo's --device (cuda[:N], cpu or auto) puts the network on a CUDA device."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def use_graph(choice: str, device: str, precision: str, compile: bool) -> bool:
    """Whether the demo runs the GraphRunner. auto: on CUDA (not with --compile or int8)."""
    if choice not in GRAPH_CHOICES:
        raise ValueError(f"unknown --graph {choice!r}; valid: {', '.join(GRAPH_CHOICES)}")
    if choice == "off":
        return False
    if choice == "on":
        if compile or precision == "int8":
            raise ValueError("--graph on runs the fp16/bf16/fp32 network; drop --compile / int8")
        return True
    return runs_on_cuda(device) and not compile and precision != "int8"


def use_device_letterbox(choice: str, graphed: bool, device: str) -> bool:
    """Whether the graph runner letterboxes frames on the device. auto: with the graph runner on
    CUDA (on the CPU cv2's resize is faster than the matmuls)."""
    if choice not in LETTERBOX_CHOICES:
        raise ValueError(f"unknown --letterbox {choice!r}; valid: {', '.join(LETTERBOX_CHOICES)}")
    if choice == "device" and not graphed:
        raise ValueError(
            "--letterbox device runs in the graph runner: add --graph on (auto is on with CUDA), "
            "and no --compile or int8"
        )
    if choice != "auto":
        return choice == "device"
    return graphed and runs_on_cuda(device)
