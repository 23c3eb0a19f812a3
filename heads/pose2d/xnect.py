"""XNect Stage I 2D branch: keypoint heatmaps and part affinity fields at stride 8.

Layers (DESIGN.md section 4), all conv-BN-ReLU except the last:
    stride-16 feature (C) -> 1x1 -> 256 -> 4x4 transposed conv, stride 2, groups 4 -> 192 (stride 8)
    -> 3x3 -> 128 ("feature2d", also read by the future 3D branch) -> 3x3 groups 4 -> 96
    -> 3x3 conv with bias -> 57 = 19 heatmaps (18 OpenPose keypoints + background) + 38 PAFs.

Output size: the backbone's stride-16 map is ceil(H/16) x ceil(W/16) and the transposed conv
exactly doubles it, so the maps are 2*ceil(H/16) x 2*ceil(W/16) (= H/8 x W/8 when 16 divides H, W).
A map cell (i, j) stands for input pixel (8j + 3.5, 8i + 3.5); see `heads.pose2d.codec`.
"""

from __future__ import annotations

import torch
from torch import nn

from selecsls.backbones import FeatureSpec, conv_bn_relu, init_weights

from ..skeletons import get_skeleton


def grouped_conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, groups: int
) -> nn.Sequential:
    """Grouped conv (no bias) -> BN -> ReLU, indexed 0/1/2 like `conv_bn_relu` (fusion finds it)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, 1, kernel_size // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def upsample_bn_relu(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """4x4 transposed conv, stride 2, padding 1 (exactly doubles H and W) -> BN -> ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def init_branch(branch: nn.Module, last: nn.Conv2d) -> nn.Conv2d:
    """He init for the branch's convs (transposed ones too); the output conv `last` starts near
    zero so early training does not fight large random maps. Returns `last`."""
    init_weights(branch)
    for m in branch.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    nn.init.normal_(last.weight, std=0.01)
    nn.init.zeros_(last.bias)
    return last


class XNect2DHead(nn.Module):
    """Reads features[in_feature] (N, C, H/16, W/16); returns
    {"heatmaps": (N, M + 1, H/8, W/8), "pafs": (N, 2L, H/8, W/8)} and, with expose_feature=True,
    also "feature2d": (N, 128, H/8, W/8) for the 3D branch. M keypoints and L limbs are the
    skeleton's (`heads.skeletons`; COCO-17: 19 heatmaps and 38 PAF channels).

    The input width C comes from the backbone's declaration, so every SelecSLS configuration and a
    pruned backbone fit. The last heatmap channel is the background; PAF channels (2i, 2i+1) are
    limb i.
    """

    def __init__(
        self,
        feature_specs: dict[str, FeatureSpec],
        in_feature: str = "stride16",
        expose_feature: bool = False,
        groups: int = 4,
        skeleton: str = "coco17",
    ) -> None:
        super().__init__()
        keypoint_skeleton = get_skeleton(skeleton)
        self.skeleton = keypoint_skeleton.name
        self.num_heatmaps, self.num_pafs = (
            keypoint_skeleton.num_heatmaps,
            keypoint_skeleton.num_pafs,
        )
        if in_feature not in feature_specs:
            raise ValueError(
                f"xnect2d: backbone has no feature {in_feature!r}; "
                f"available: {', '.join(feature_specs)}"
            )
        self.in_feature = in_feature
        self.expose_feature = expose_feature
        self.stride = feature_specs[in_feature].stride // 2
        in_channels = feature_specs[in_feature].channels
        self.trunk = nn.Sequential(
            conv_bn_relu(in_channels, 256, 1),
            upsample_bn_relu(256, 192, groups),
            conv_bn_relu(192, 128, 3),
        )
        self.feature_channels = 128
        self.predictor = nn.Sequential(
            grouped_conv_bn_relu(128, 96, 3, groups),
            nn.Conv2d(96, self.num_heatmaps + self.num_pafs, 3, 1, 1, bias=True),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        last = init_branch(self, self.predictor[-1])
        # Start near the all-background prediction: small outputs, background channel at 1, so the
        # first iterations do not fight huge random maps.
        with torch.no_grad():
            last.bias[self.num_heatmaps - 1] = 1.0

    def forward_feature(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, C, h, w) stride-16 map -> (N, 128, 2h, 2w) stride-8 feature."""
        return self.trunk(features[self.in_feature])

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feature = self.forward_feature(features)
        maps = self.predictor(feature)
        out = {"heatmaps": maps[:, : self.num_heatmaps], "pafs": maps[:, self.num_heatmaps :]}
        if self.expose_feature:
            out["feature2d"] = feature
        return out
