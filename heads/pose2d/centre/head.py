"""The centre + offset 2D head (DEKR-style, grouping-free), beside the XNect PAF head.

Layers (conv-BN-ReLU unless said):
    stride-16 feature (C16) -> 1x1 -> 256 -> 4x4 transposed conv, stride 2, groups 4 -> 192
    [+ the backbone's stride-8 feature (C8) -> 1x1 -> 64, concatenated: `fuse_feature`]
    -> 3x3 -> 128 ("feature2d", what the XNect 3D branch reads from a 2D head)
    heatmaps: 3x3 -> 96 -> 3x3 conv with bias -> M + 1 (M keypoints, then the person centre)
    offsets:  1x1 -> M x 16 -> 3x3 groups M -> M x 16 -> 1x1 groups M with bias -> 2M
The offset branch is split per keypoint after its first layer (DEKR's disentangling: each
keypoint regresses from its own 16 channels), which costs little at stride 8.

Map geometry is the PAF head's: 2 * ceil(H/16) x 2 * ceil(W/16) cells, cell (i, j) centred on
input pixel (8j + 3.5, 8i + 3.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selecsls.backbones import FeatureSpec, conv_bn_relu

from ...skeletons import get_skeleton
from ..xnect import grouped_conv_bn_relu, init_branch, upsample_bn_relu

# channels of the backbone's stride-8 map after its 1x1 projection (fuse_feature)
LATERAL_CHANNELS = 64


class Centre2DHead(nn.Module):
    """Reads features[in_feature] (N, C16, H/16, W/16) and, with `fuse_feature`, features[...]
    (N, C8, H/8, W/8); returns {"heatmaps": (N, M + 1, H/8, W/8), "offsets": (N, 2M, H/8, W/8)}
    and, with expose_feature=True, "feature2d": (N, 128, H/8, W/8).

    heatmaps: the skeleton's M model keypoints (COCO-17: the OpenPose-18 order, neck included)
    then the person-centre channel. offsets channels (2k, 2k + 1): (dx, dy) in map cells from a
    cell to keypoint k of the person centred there. Input widths come from the backbone's
    declarations, so every configuration, width and a pruned backbone fit.
    """

    def __init__(
        self,
        feature_specs: dict[str, FeatureSpec],
        in_feature: str = "stride16",
        fuse_feature: str | None = "stride8",
        expose_feature: bool = False,
        groups: int = 4,
        offset_channels: int = 16,
        skeleton: str = "coco17",
    ) -> None:
        super().__init__()
        keypoint_skeleton = get_skeleton(skeleton)
        self.skeleton = keypoint_skeleton.name
        self.num_keypoints = keypoint_skeleton.num_model_keypoints
        self.num_heatmaps = self.num_keypoints + 1
        for key in (in_feature, fuse_feature):
            if key is not None and key not in feature_specs:
                raise ValueError(
                    f"centre2d: backbone has no feature {key!r}; available: "
                    f"{', '.join(feature_specs)}"
                )
        self.in_feature, self.fuse_feature = in_feature, fuse_feature
        self.expose_feature = expose_feature
        self.stride = feature_specs[in_feature].stride // 2
        if fuse_feature is not None and feature_specs[fuse_feature].stride != self.stride:
            raise ValueError(
                f"centre2d: fuse_feature {fuse_feature!r} has stride "
                f"{feature_specs[fuse_feature].stride}, the head's maps {self.stride}"
            )
        self.trunk = nn.Sequential(
            conv_bn_relu(feature_specs[in_feature].channels, 256, 1),
            upsample_bn_relu(256, 192, groups),
        )
        fused = 192
        if fuse_feature is not None:
            self.lateral = conv_bn_relu(feature_specs[fuse_feature].channels, LATERAL_CHANNELS, 1)
            fused += LATERAL_CHANNELS
        self.fuse = conv_bn_relu(fused, 128, 3)
        self.feature_channels = 128
        self.heatmap_branch = nn.Sequential(
            grouped_conv_bn_relu(128, 96, 3, groups),
            nn.Conv2d(96, self.num_heatmaps, 3, 1, 1, bias=True),
        )
        width = self.num_keypoints * offset_channels
        self.offset_branch = nn.Sequential(
            conv_bn_relu(128, width, 1),
            grouped_conv_bn_relu(width, width, 3, self.num_keypoints),
            nn.Conv2d(width, 2 * self.num_keypoints, 1, groups=self.num_keypoints, bias=True),
        )
        init_branch(self, self.heatmap_branch[-1])
        # offsets start at 0 (every keypoint at its centre) rather than at random distances
        nn.init.zeros_(self.offset_branch[-1].weight)
        nn.init.zeros_(self.offset_branch[-1].bias)

    def forward_feature(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The stride-8 feature (N, 128, h, w) both branches read."""
        up = self.trunk(features[self.in_feature])
        if self.fuse_feature is not None:
            lateral = self.lateral(features[self.fuse_feature])
            # the stride-16 map's ceil(H/16) rows double to 2 * ceil(H/16), which is the
            # stride-8 map's ceil(H/8) or one more: pad by one and crop to it (inputs are padded
            # bottom/right; slicing, unlike a computed pad, stays dynamic in an ONNX export)
            lateral = F.pad(lateral, (0, 1, 0, 1))[..., : up.shape[-2], : up.shape[-1]]
            up = torch.cat([up, lateral], 1)
        return self.fuse(up)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feature = self.forward_feature(features)
        out = {"heatmaps": self.heatmap_branch(feature), "offsets": self.offset_branch(feature)}
        if self.expose_feature:
            out["feature2d"] = feature
        return out
