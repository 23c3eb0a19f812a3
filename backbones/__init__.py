"""SelecSLS backbones: the network, its registry and its weight files."""

from .registry import BACKBONES, build_backbone, canonical_name
from .selecsls import (
    STAGE_TABLES,
    FeatureSpec,
    SelecSLS,
    SelecSLSBlock,
    conv_bn_relu,
    init_weights,
)

__all__ = [
    "BACKBONES",
    "STAGE_TABLES",
    "FeatureSpec",
    "SelecSLS",
    "SelecSLSBlock",
    "build_backbone",
    "canonical_name",
    "conv_bn_relu",
    "init_weights",
]
