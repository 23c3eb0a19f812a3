"""A backbone plus named heads, built from a plain config dict that checkpoints carry."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from selecsls.backbones import build_backbone, canonical_name
from selecsls.backbones.fusion import fuse_bn_structure

from .classification import ClassificationHead
from .pose2d.centre.head import Centre2DHead
from .pose2d.xnect import XNect2DHead
from .pose3d.lifting import LiftingHead
from .pose3d.xnect import Centre3DHead, XNect3DHead
from .prune import apply_pruned_config

# Head name -> constructor taking (feature_specs, **kwargs); its signature is the config schema.
HEADS: dict[str, Callable[..., nn.Module]] = {
    "classification": ClassificationHead,
    "xnect2d": XNect2DHead,
    "centre2d": Centre2DHead,  # DEKR-style centres + offsets, no grouping
    "xnect3d": XNect3DHead,
    "centre3d": Centre3DHead,  # Stage I with the centre + offset 2D head
    "lifting": LiftingHead,  # Stage II: per person after decoding, stored with Stage I
}


class Model(nn.Module):
    """images (N, 3, H, W) -> dict of raw head outputs (e.g. {"logits": (N, classes)}).

    `config` is the dict the model was built from; `build_model(model.config)` rebuilds it, which is
    how checkpoints, evaluation, export and the demo recreate a network from a file alone.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module], config: dict) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.config = copy.deepcopy(config)

    @property
    def feature_specs(self):
        return self.backbone.feature_specs

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        out: dict[str, torch.Tensor] = {}
        for head in self.heads.values():
            out.update(head(features))
        return out


def build_model(config: dict[str, Any]) -> Model:
    """Build from {"backbone": name, "heads": {head_name: {kwarg: value}}, "fused": bool}.

    "backbone_width" (default 1.0) scales the backbone's channels (`backbones.scale_blocks`);
    the heads take their input widths from the backbone's declared features.

    "fused": true builds the BN-folded layout (`selecsls.backbones.fusion`), whose weights then
    come from a checkpoint; "pruned": {...} (from `selecsls.heads.prune`) then narrows it to the
    stored pruned widths. Unknown head names and arguments raise ValueError naming the choices.
    """
    config = copy.deepcopy(config)
    config["backbone"] = canonical_name(config["backbone"])
    backbone = build_backbone(config["backbone"], float(config.get("backbone_width", 1.0)))
    heads = {}
    for name, kwargs in (config.get("heads") or {}).items():
        if name not in HEADS:
            raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(HEADS)}")
        try:
            heads[name] = HEADS[name](backbone.feature_specs, **(kwargs or {}))
        except TypeError as err:
            raise ValueError(f"bad arguments for head {name!r}: {err}") from None
    model = Model(backbone, heads, config)
    model = fuse_bn_structure(model) if config.get("fused") else model
    if config.get("pruned"):  # widths written by selecsls.heads.prune.prune_model
        model = apply_pruned_config(model, config["pruned"])
    return model


def classifier_config(name: str, num_classes: int = 1000) -> dict[str, Any]:
    """The config of the seed's `Net`: backbone `name` with its own classification head."""
    name = canonical_name(name)
    return {
        "backbone": name,
        "heads": {"classification": {"variant": name, "num_classes": num_classes}},
    }


def build_classifier(name: str, num_classes: int = 1000) -> Model:
    """The seed's `Net(config=name)`: backbone + its classification head, randomly initialised."""
    return build_model(classifier_config(name, num_classes))
