"""XNect Stage I: the 2D branch plus the 3D branch (location maps), one head, one forward.

The 3D branch (DESIGN.md section 4), conv-BN-ReLU except the last layer:
    stride-16 feature (C) -> 1x1 -> 256 -> 4x4 transposed conv, stride 2, groups 4 -> 192 (stride 8)
    -> 3x3 -> 160 -> concat with the 2D branch's 128-channel stride-8 feature (288)
    -> 1x1 -> 160 -> 3x3 groups 4 -> 128 -> 3x3 conv with bias -> 63 location-map channels.
Channel 3j + c of the location maps is coordinate c (x, y, z) of 3D joint j (the 21-joint order of
`heads.skeletons`), root-relative, in the codec's unit (`heads.pose3d.codec`).

Why one head subclassing the 2D head: the 3D branch needs the 2D branch's intermediate feature, and
the backbone -> head interface hands a head only backbone features. Subclassing keeps the 2D
branch's parameter names (`trunk.*`, `predictor.*`) identical, so a 2D-trained checkpoint
initialises Stage I by renaming its head prefix (`stage1_state_from_2d`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from selecsls.backbones import FeatureSpec, conv_bn_relu

from ..pose2d.centre.head import Centre2DHead
from ..pose2d.xnect import (
    XNect2DHead,
    grouped_conv_bn_relu,
    init_branch,
    upsample_bn_relu,
)
from ..skeletons import JOINTS21_NAMES

NUM_JOINTS3D = len(JOINTS21_NAMES)
NUM_LOCMAPS = 3 * NUM_JOINTS3D


class XNect3DHead(XNect2DHead):
    """Reads features[in_feature] (N, C, H/16, W/16); returns {"heatmaps": (N, 19, H/8, W/8),
    "pafs": (N, 38, H/8, W/8), "locmaps": (N, 63, H/8, W/8)} (+ "feature2d" with
    expose_feature=True). C comes from the backbone's declaration (any config, pruned too)."""

    def __init__(
        self,
        feature_specs: dict[str, FeatureSpec],
        in_feature: str = "stride16",
        expose_feature: bool = False,
        groups: int = 4,
    ) -> None:
        super().__init__(feature_specs, in_feature, expose_feature, groups)
        self.trunk3d, self.predictor3d = branch3d(
            feature_specs[in_feature].channels, self.feature_channels, groups
        )

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feature = self.forward_feature(features)
        maps = self.predictor(feature)
        feature3d = self.trunk3d(features[self.in_feature])
        locmaps = self.predictor3d(torch.cat([feature3d, feature], dim=1))
        out = {
            "heatmaps": maps[:, : self.num_heatmaps],
            "pafs": maps[:, self.num_heatmaps :],
            "locmaps": locmaps,
        }
        if self.expose_feature:
            out["feature2d"] = feature
        return out


class Centre3DHead(Centre2DHead):
    """Stage I with the centre + offset 2D head: the same 3D branch, reading the centre head's
    stride-8 feature. Returns the centre head's {"heatmaps", "offsets"} plus "locmaps" (N, 63,
    H/8, W/8); the 2D people (and so the joints the maps are read at) come from its codec."""

    def __init__(
        self,
        feature_specs: dict[str, FeatureSpec],
        in_feature: str = "stride16",
        fuse_feature: str | None = "stride8",
        expose_feature: bool = False,
        groups: int = 4,
    ) -> None:
        super().__init__(feature_specs, in_feature, fuse_feature, expose_feature, groups)
        self.trunk3d, self.predictor3d = branch3d(
            feature_specs[in_feature].channels, self.feature_channels, groups
        )

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feature = self.forward_feature(features)
        feature3d = self.trunk3d(features[self.in_feature])
        out = {
            "heatmaps": self.heatmap_branch(feature),
            "offsets": self.offset_branch(feature),
            "locmaps": self.predictor3d(torch.cat([feature3d, feature], dim=1)),
        }
        if self.expose_feature:
            out["feature2d"] = feature
        return out


def branch3d(
    in_channels: int, feature_channels: int, groups: int
) -> tuple[nn.Sequential, nn.Sequential]:
    """The 3D branch (module docstring): (trunk3d on the stride-16 map, predictor3d on its
    output concatenated with the 2D head's stride-8 feature), initialised near zero."""
    trunk3d = nn.Sequential(
        conv_bn_relu(in_channels, 256, 1),
        upsample_bn_relu(256, 192, groups),
        conv_bn_relu(192, 160, 3),
    )
    predictor3d = nn.Sequential(
        conv_bn_relu(160 + feature_channels, 160, 1),
        grouped_conv_bn_relu(160, 128, 3, groups),
        nn.Conv2d(128, NUM_LOCMAPS, 3, 1, 1, bias=True),
    )
    # near-zero start: the root-relative pose of an "average" joint is close to 0
    init_branch(nn.ModuleList([trunk3d, predictor3d]), predictor3d[-1])
    return trunk3d, predictor3d


def stage1_state_from_2d(
    state: Mapping[str, torch.Tensor], src_head: str = "xnect2d", dst_head: str = "xnect3d"
) -> dict[str, torch.Tensor]:
    """A 2D model's state dict (our key names) renamed to initialise a Stage I model: keys
    `heads.<src_head>.*` become `heads.<dst_head>.*`, the backbone's are kept. Load the result
    with `model.load_state_dict(..., strict=False)`; only the 3D branch (`trunk3d`,
    `predictor3d`) is then missing."""
    src, dst = f"heads.{src_head}.", f"heads.{dst_head}."
    return {(dst + k[len(src) :] if k.startswith(src) else k): v for k, v in state.items()}
