"""Pose models for the benchmark: `pose:<backbone>` is a backbone with the XNect 2D head.

`pose:selecsls60` (any SelecSLS configuration) is the model the 2D recipes train
(`build_model` with the xnect2d head). `pose:resnet50` is the baseline with the same head: the
torchvision ResNet-50 trunk (stem and layer1-4, no pooling or classifier), its stride-16 feature
(layer3, 1024 channels) read by the XNect 2D head just as the head reads SelecSLS's stride-16
feature, so both networks pay for their whole trunk and the same head.
"""

from __future__ import annotations

from torch import Tensor, nn

from selecsls.backbones import canonical_name
from selecsls.backbones.selecsls import FeatureSpec
from selecsls.heads import build_model
from selecsls.heads.pose2d.xnect import XNect2DHead

POSE_PREFIX = "pose:"


class ResNetFeatures(nn.Module):
    """torchvision ResNet-50 as a feature backbone: images (N, 3, H, W) -> {"stride4": (N, 256,
    H/4, W/4), "stride8": 512 ch, "stride16": 1024 ch, "stride32": 2048 ch}."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision.models

        net = torchvision.models.resnet50(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        widths = (256, 512, 1024, 2048)
        self.feature_specs = {
            f"stride{4 << i}": FeatureSpec(c, 4 << i) for i, c in enumerate(widths)
        }

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.stem(images)
        out = {}
        for name, layer in zip(self.feature_specs, self.layers):
            x = layer(x)
            out[name] = x
        return out


class PoseBaseline(nn.Module):
    """A feature backbone + the XNect 2D head: images -> {"heatmaps", "pafs"}."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = XNect2DHead(backbone.feature_specs)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.head(self.backbone(images))


def pose_builder(name: str):
    """`pose:<backbone>` -> (label, constructor); ValueError for an unknown backbone."""
    backbone = name[len(POSE_PREFIX) :]
    if backbone == "resnet50":
        return name, lambda: PoseBaseline(ResNetFeatures())
    ours = canonical_name(backbone)  # ValueError naming the configurations
    return POSE_PREFIX + ours, lambda: build_model({"backbone": ours, "heads": {"xnect2d": {}}})
