"""The 2D heads a pose model can carry, and the codec and loss that follow each one.

`model.head` in a pose2d config picks a name here; the model config then records it (its heads
dict holds that name), and evaluation, the demo and export find the codec from it
(`head_of`). Both codecs share one contract: `encode(keypoints, (W, H), ignore_mask)` ->
targets, `decode_outputs(outputs, transform)` -> (keypoints (P, K, 3) in the annotation order,
scores (P,)), `decode_batch`, `output_keys`, `target_keys`, `keypoint_skeleton`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .centre.codec import CentreCodec
from .centre.loss import centre_losses
from .codec import Pose2DCodec
from .loss import pose2d_losses


@dataclass(frozen=True)
class Head2D:
    """A 2D head's codec class and loss function (`loss(outputs, targets, **options)`)."""

    codec: type
    loss: Callable[..., Any]

    def loss_options(self, section: dict[str, Any]) -> dict[str, Any]:
        """The keys of a config's loss section that this head's loss takes."""
        names = set(inspect.signature(self.loss).parameters) - {"outputs", "targets"}
        return {k: v for k, v in section.items() if k in names}


HEADS_2D: dict[str, Head2D] = {
    "xnect2d": Head2D(Pose2DCodec, pose2d_losses),  # heatmaps + PAFs, greedy grouping
    "centre2d": Head2D(CentreCodec, centre_losses),  # centres + offsets, no grouping
}


def get_head2d(name: str) -> Head2D:
    if name not in HEADS_2D:
        raise ValueError(f"unknown 2D head {name!r}; valid: {', '.join(HEADS_2D)}")
    return HEADS_2D[name]


def make_codec2d(head: str, settings: dict[str, Any] | None = None) -> Pose2DCodec | CentreCodec:
    """The codec of 2D head `head` from a dict of settings (keys it lacks are ignored: one
    config's codec section serves either head)."""
    codec = get_head2d(head).codec
    names = {f.name for f in fields(codec) if f.init}
    return codec(**{k: v for k, v in (settings or {}).items() if k in names})


# Stage I heads (2D + 3D branches) -> the 2D head inside them, and back
STAGE1_HEADS = {"xnect2d": "xnect3d", "centre2d": "centre3d"}


def head_of(model_config: dict[str, Any] | None) -> str:
    """The 2D head a model config carries: "centre2d" when it has one (alone or inside the
    Stage I "centre3d" head), else "xnect2d" (the XNect 2D branch, alone or inside "xnect3d",
    and older checkpoints)."""
    heads = (model_config or {}).get("heads") or {}
    return "centre2d" if {"centre2d", "centre3d"} & set(heads) else "xnect2d"


def skeleton_in(model_config: dict[str, Any] | None) -> str:
    """The skeleton recorded by a model config's 2D head (COCO-17 where none is recorded)."""
    heads = (model_config or {}).get("heads") or {}
    head = head_of(model_config)
    for name in (head, STAGE1_HEADS[head]):
        if isinstance(heads.get(name), dict) and "skeleton" in heads[name]:
            return heads[name]["skeleton"]
    return "coco17"
