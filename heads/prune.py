"""Pruning a whole model: the backbone's channels plus the heads that consume its features.

`prune_model(model, threshold)` returns a pruned, BN-folded copy whose `config["pruned"]` holds the
layout, so `save_model` / `load_model` round-trip it with no extra arguments (`build_model` calls
`apply_pruned_config`). Each head type declares how it absorbs the constant channels of the feature
maps it reads, in HEAD_PRUNERS (head name in HEADS -> function). A head without an entry still
works exactly: it is BN-folded and wrapped in `FilledHead`, which rebuilds the full-width feature
maps (kept channels + constants) before calling it; it just does not get smaller or faster.

A head pruner is `fn(head, features: {key: ChannelState}, rule: KeepRule) -> None`, editing the
head in place (it is already a copy): conv-BN-ReLU layers go through `prune_conv_bn` (the first one
reading a backbone map absorbs its constants), plain convs through `absorb_conv`, linear layers
after a mean pool through `absorb_linear`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from selecsls.backbones.fusion import fuse_bn, fuse_bn_structure, is_conv_bn
from selecsls.backbones.prune import (
    ChannelState,
    KeepRule,
    absorb_linear,
    prune_conv_bn,
    prune_selecsls,
)
from selecsls.backbones.prune_layout import apply_pruned_layout, pruned_layout

from .classification import ClassificationHead


def prune_classification_head(
    head: ClassificationHead, features: dict[str, ChannelState], rule: KeepRule
) -> None:
    """convs (conv-BN-ReLU chain on "stride16") then mean pool then fc, pruned in place."""
    state = features[head.in_feature]
    for layer in head.convs:
        state = prune_conv_bn(layer, state, rule)
    head.fc = absorb_linear(head.fc, state)
    head.num_features = state.kept


def _absorb_first_layers(
    head: nn.Module, first_layers: list[nn.Sequential], features: dict[str, ChannelState]
) -> None:
    """The given conv-BN-ReLU layers (all reading features[head.in_feature]) absorb its constant
    channels and keep their own widths; every conv-BN of the head is BN-folded. Grouped and
    transposed convs behind them are not channel-pruned (their groups would have to stay whole)."""
    for layer in first_layers:
        prune_conv_bn(layer, features[head.in_feature], KeepRule(None))
    for module in head.modules():
        if is_conv_bn(module):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()


def prune_xnect2d_head(head: nn.Module, features: dict[str, ChannelState], rule: KeepRule) -> None:
    """XNect 2D branch: its first 1x1 conv-BN-ReLU absorbs the pruned stride-16 channels."""
    _absorb_first_layers(head, [head.trunk[0]], features)


def prune_centre2d_head(head: nn.Module, features: dict[str, ChannelState], rule: KeepRule) -> None:
    """Centre + offset head: its first 1x1 layer absorbs the pruned stride-16 channels, and its
    lateral 1x1 (when it fuses the stride-8 map) those of that map."""
    if head.fuse_feature is not None:
        prune_conv_bn(head.lateral, features[head.fuse_feature], KeepRule(None))
    _absorb_first_layers(head, [head.trunk[0]], features)


def prune_centre3d_head(head: nn.Module, features: dict[str, ChannelState], rule: KeepRule) -> None:
    """Stage I with the centre + offset 2D head: its lateral 1x1 plus both branches' first 1x1
    layers read the backbone's maps."""
    if head.fuse_feature is not None:
        prune_conv_bn(head.lateral, features[head.fuse_feature], KeepRule(None))
    _absorb_first_layers(head, [head.trunk[0], head.trunk3d[0]], features)


def prune_xnect3d_head(head: nn.Module, features: dict[str, ChannelState], rule: KeepRule) -> None:
    """XNect Stage I (2D + 3D branches): both branches' first 1x1 layers read the backbone map."""
    _absorb_first_layers(head, [head.trunk[0], head.trunk3d[0]], features)


def keep_feature_free_head(
    head: nn.Module, features: dict[str, ChannelState], rule: KeepRule
) -> None:
    """A head that reads no backbone feature map (XNect Stage II, "lifting": its LiftingNet runs
    on decoded people, and its forward(features) returns {}): pruning the backbone cannot change
    it, so it stays as it is. Without this entry it would be wrapped in a FilledHead, which
    rebuilds every full-width feature map on each forward only to discard them, and hides the
    head's LiftingNet behind `.head`. Its Linear + BatchNorm1d layers are not folded (fusion
    folds conv-BN pairs only), so the head keeps its class, keys and weights."""


HEAD_PRUNERS: dict[str, Callable[[nn.Module, dict[str, ChannelState], KeepRule], None]] = {
    "classification": prune_classification_head,
    "xnect2d": prune_xnect2d_head,
    "centre2d": prune_centre2d_head,
    "xnect3d": prune_xnect3d_head,
    "centre3d": prune_centre3d_head,
    "lifting": keep_feature_free_head,
}


class FilledHead(nn.Module):
    """Runs an unpruned `head` on pruned features by refilling the removed channels with their
    constants. features {key: (N, kept, H, W)} -> head({key: (N, full, H, W)})."""

    def __init__(self, head: nn.Module, widths: dict[str, list[int]]) -> None:
        super().__init__()
        self.head = head
        self.keys = list(widths)
        for key, (full, kept) in widths.items():
            self.register_buffer(f"{key}_index", torch.zeros(kept, dtype=torch.long))
            self.register_buffer(f"{key}_constant", torch.zeros(full))

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        full = dict(features)
        for key in self.keys:
            x, index = features[key], getattr(self, f"{key}_index")
            constant = getattr(self, f"{key}_constant").to(x.dtype)
            n, _, h, w = x.shape
            filled = constant.view(1, -1, 1, 1).expand(n, -1, h, w).clone()
            filled[:, index] = x
            full[key] = filled
        return self.head(full)


def _fill(head: nn.Module, features: dict[str, ChannelState]) -> FilledHead:
    widths = {key: [len(s.keep), s.kept] for key, s in features.items()}
    filled = FilledHead(fuse_bn(head), widths)
    for key, state in features.items():
        setattr(filled, f"{key}_index", torch.nonzero(state.keep).flatten())
        setattr(filled, f"{key}_constant", state.constant.clone())
    return filled


def _check_prunable(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "backbone" not in config:
        raise ValueError("prune_model needs a selecsls Model (built by build_model / load_model)")
    if config.get("pruned"):
        raise ValueError("this model is already pruned; prune the original (unfused) model")
    if config.get("fused"):
        raise ValueError("this model is BN-fused, so its gammas are gone; prune the unfused model")


@torch.no_grad()
def prune_model(model: nn.Module, threshold: float | None = 1e-3) -> nn.Module:
    """A pruned, BN-folded copy of `model` (eval mode); `model` itself is not modified.

    Keeps channel c of every conv-BN iff |gamma_c| > threshold (threshold None: keep all, i.e.
    fusion only). Exact for removed channels with gamma == 0, for any beta.
    """
    if threshold is not None and not (float(threshold) >= 0 and float(threshold) < float("inf")):
        raise ValueError(f"threshold must be a finite number >= 0 (or None), got {threshold}")
    rule = KeepRule(None if threshold is None else float(threshold))
    _check_prunable(model)
    pruned = copy.deepcopy(model).eval()
    features = prune_selecsls(pruned.backbone, rule)
    filled = {}
    for name, head in pruned.heads.items():
        pruner = HEAD_PRUNERS.get(name)
        if pruner is not None:
            pruner(head, features, rule)
        else:
            pruned.heads[name] = _fill(head, features)
            filled[name] = {key: [len(s.keep), s.kept] for key, s in features.items()}
    _set_feature_widths(pruned.backbone, {key: s.kept for key, s in features.items()})
    layout = pruned_layout(pruned)
    pruned.config["fused"] = True
    pruned.config["pruned"] = {
        "threshold": rule.threshold,
        "features": {key: s.kept for key, s in features.items()},
        "filled_heads": filled,
        **layout,
    }
    return pruned


def _set_feature_widths(backbone: nn.Module, widths: dict[str, int]) -> None:
    specs = backbone.feature_specs
    backbone.feature_specs = {
        key: dataclasses.replace(spec, channels=int(widths.get(key, spec.channels)))
        for key, spec in specs.items()
    }


def apply_pruned_config(model: nn.Module, pruned: dict[str, Any]) -> nn.Module:
    """In place: give a freshly built model (fused layout) the pruned layout of `pruned`
    (a `config["pruned"]` written by `prune_model`). Weights then come from the checkpoint."""
    for name, widths in (pruned.get("filled_heads") or {}).items():
        if name not in model.heads:
            raise ValueError(f"pruned config wraps head {name!r}, which the model lacks")
        head = fuse_bn_structure(model.heads[name])
        model.heads[name] = FilledHead(head, widths)
    apply_pruned_layout(model, pruned)
    _set_feature_widths(model.backbone, pruned.get("features") or {})
    return model
