"""3D poses for the demo: XNect Stage I read-out or Stage II lifting, then absolute placement.

A network with the Stage I 3D branch ("xnect3d" head) outputs location maps ("locmaps"). Each
frame, `Pose3DStage` hands one image's outputs to `heads.pose3d.people.predict_people3d`, which
decodes the 2D people and gives every person a root-relative 3D pose:
- Stage II ("stage2"): when a LiftingNet is known (the checkpoint's "lifting" head, or
  `--lifting CKPT`), the per-person lifting network on the 2D joints + location-map read-outs;
- Stage I ("stage1"): otherwise the location maps read at each joint's 2D detection.
Both are then placed in the camera by the least-squares root depth (default intrinsics from the
frame width). The LiftingNet is tiny (~0.3 M parameters, one row per person), so it always runs
in PyTorch fp32 on the CPU, after either backend: an ONNX export holds Stage I only.
"""

from __future__ import annotations

import base64
import copy
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.pose3d.lifting import LiftingNet, find_lifting
from selecsls.heads.pose3d.people import predict_people3d

LOCMAPS = "locmaps"  # the Stage I 3D branch's output name (heads.xnect3d)
LIFTING_KEY = "lifting_state"  # ONNX metadata: Stage II's weights (lifting_to_text)
SOURCE_NAMES = {"stage1": "Stage I location-map read-out", "stage2": "Stage II lifting"}
SOURCE_LABELS = {"stage1": "3D: Stage I", "stage2": "3D: Stage II"}  # FPS overlay, panel


def codec3d_from(settings: Any, codec2d: Pose2DCodec) -> Pose3DCodec:
    """The 3D codec of a checkpoint's codec settings (the pose3d/lifting tasks' keys sigma3d,
    unit3d; absent ones default), with the 2D codec's map geometry."""
    settings = settings if isinstance(settings, dict) else {}
    return Pose3DCodec(
        stride=codec2d.stride,
        size_divisor=codec2d.size_divisor,
        sigma=float(settings.get("sigma3d", codec2d.sigma)),
        unit=float(settings.get("unit3d", 1000.0)),
    )


def lifting_to_text(net: LiftingNet) -> str:
    """Stage II's weights as base64 text, for an ONNX file's metadata: the ONNX graph is Stage I
    only (Stage II runs per person after decoding), so the file carries Stage II beside it."""
    buffer = io.BytesIO()
    state = {k: v.detach().float().cpu() for k, v in net.state_dict().items()}
    torch.save({"num_joints": net.num_joints, "widths": list(net.widths), "state": state}, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def lifting_from_text(text: str, source: str) -> LiftingNet:
    """The LiftingNet `lifting_to_text` wrote (fp32, CPU, eval mode); ValueError naming `source`
    when the text is not one."""
    try:
        data = torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True)
        net = LiftingNet(data["num_joints"], tuple(data["widths"]))
        net.load_state_dict(data["state"])
    except Exception as err:  # any corruption: binascii, pickle, key or shape errors
        raise ValueError(
            f"{source}: the stored Stage II ({LIFTING_KEY}) is unreadable: {err}"
        ) from None
    return net.eval()


def cpu_lifting(model: nn.Module) -> LiftingNet | None:
    """An fp32 CPU eval-mode copy of the model's Stage II network, or None without one (the
    copy leaves the model untouched, whatever device or dtype the network runs in)."""
    net = find_lifting(model)
    if net is None:
        return None
    return copy.deepcopy(net).float().cpu().eval()


@dataclass
class Pose3DStage:
    """One image's outputs {name: (C, h, w)} -> people with 2D keypoints and 3D poses."""

    codec3d: Pose3DCodec
    lifting: LiftingNet | None = None

    @property
    def source(self) -> str:
        """The JSON's pose3d_source: "stage2" with a lifting network, else "stage1"."""
        return "stage2" if self.lifting is not None else "stage1"

    @property
    def description(self) -> str:
        if self.lifting is None:
            return SOURCE_NAMES["stage1"]
        return f"{SOURCE_NAMES['stage2']} (pytorch cpu fp32) on the Stage I location maps"

    def __call__(
        self,
        outputs: dict,
        codec2d: Pose2DCodec,
        transform: np.ndarray,
        image_size: tuple[int, int],
    ) -> dict[str, np.ndarray]:
        """outputs of one image, the 2D codec, transform (2, 3) original -> input pixels,
        image_size (W, H) of the original frame -> {"keypoints": (P, 17, 3) and "points2d":
        (P, 21, 3) in original pixels, "scores": (P,), "pose3d": (P, 21, 3) root-relative mm,
        "pose3d_camera": (P, 21, 3) camera mm (NaN where a person cannot be placed)}, best
        person first."""
        return predict_people3d(
            outputs,
            codec2d,
            self.codec3d,
            lifting=self.lifting,
            transform=transform,
            image_size=image_size,
        )
