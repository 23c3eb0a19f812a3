"""Backbones by name: a plain dict from canonical name to constructor."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .selecsls import STAGE_TABLES, SelecSLS, scale_blocks


def _selecsls(name: str, width: float = 1.0) -> SelecSLS:
    return SelecSLS(name, scale_blocks(STAGE_TABLES[name], width))


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    name: partial(_selecsls, name) for name in STAGE_TABLES
}


def canonical_name(name: str) -> str:
    """Map the seed's (`SelecSLS42_B`), timm's (`selecsls42b`) and our spellings to one name.

    Raises ValueError listing the valid names when nothing matches.
    """
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in BACKBONES:
        valid = ", ".join(BACKBONES)
        raise ValueError(f"unknown backbone {name!r}; valid names: {valid}")
    return key


def build_backbone(name: str, width: float = 1.0) -> SelecSLS:
    """Build a randomly initialised backbone by name (any spelling `canonical_name` accepts);
    `width` scales every block's channels (`scale_blocks`; 1.0 is the seed's network)."""
    return BACKBONES[canonical_name(name)](width=width)
