"""ImageNet classification head: the seed's stride-32/64 convs, global average pool, linear."""

from __future__ import annotations

import torch
from torch import nn

from selecsls.backbones import FeatureSpec, conv_bn_relu, init_weights

# One row per conv-BN-ReLU: (in_channels, out_channels, kernel_size, stride). The first layer reads
# the backbone's stride-16 map; the last layer's width is the pooled feature size.
HEAD_TABLES: dict[str, list[tuple[int, int, int, int]]] = {
    "selecsls42": [(480, 960, 3, 2), (960, 1024, 3, 1), (1024, 1024, 3, 2), (1024, 1280, 1, 1)],
    "selecsls42b": [(480, 960, 3, 2), (960, 1024, 3, 1), (1024, 1280, 3, 2), (1280, 1024, 1, 1)],
    "selecsls60": [(416, 756, 3, 2), (756, 1024, 3, 1), (1024, 1024, 3, 2), (1024, 1280, 1, 1)],
    "selecsls60b": [(416, 756, 3, 2), (756, 1024, 3, 1), (1024, 1280, 3, 2), (1280, 1024, 1, 1)],
    # The seed's 84 ends in a 1x1 conv; timm's selecsls84 uses a 3x3 there. We follow the seed.
    "selecsls84": [(512, 960, 3, 2), (960, 1024, 3, 1), (1024, 1024, 3, 2), (1024, 1280, 1, 1)],
    "selecsls102": [(480, 960, 3, 2), (960, 1024, 3, 1), (1024, 1024, 3, 2), (1024, 1280, 1, 1)],
}


class ClassificationHead(nn.Module):
    """Reads "stride16" (N, C, H, W) and returns {"logits": (N, num_classes)}.

    `variant` names the seed's layer table (HEAD_TABLES); the first layer's input width is taken
    from the backbone's declaration, so the head also fits a backbone with other widths.
    """

    in_feature = "stride16"

    def __init__(
        self, feature_specs: dict[str, FeatureSpec], variant: str, num_classes: int = 1000
    ) -> None:
        super().__init__()
        if variant not in HEAD_TABLES:
            raise ValueError(
                f"unknown classification head variant {variant!r}; valid: {', '.join(HEAD_TABLES)}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        rows = HEAD_TABLES[variant]
        in_channels = feature_specs[self.in_feature].channels
        layers = []
        for _, out_channels, kernel_size, stride in rows:
            layers.append(conv_bn_relu(in_channels, out_channels, kernel_size, stride))
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.num_features = in_channels
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.convs(features[self.in_feature])
        # mean over H, W as in the seed (identical to adaptive average pooling to 1x1)
        return {"logits": self.fc(x.mean((2, 3)))}
