"""Masked L2 loss on heatmaps and PAFs (the lightweight OpenPose recipe), outside the model."""

from __future__ import annotations

import torch


def pose2d_losses(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    paf_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Masked squared error summed over cells and channels, halved, averaged over the batch.

    outputs: {"heatmaps": (N, 19, h, w), "pafs": (N, 38, h, w)} from the head; targets: the
    codec's {"heatmaps", "pafs", "mask": (N, 1, h, w)} (mask 0 where crowds or unannotated people
    lie). Returns {"heatmap_loss", "paf_loss", "loss" = heatmap_loss + paf_weight * paf_loss}.
    Summing (not averaging) over cells keeps the gradient per person independent of the image
    size, as in the reference recipe whose learning rates assume it.
    """
    mask = targets["mask"]
    losses = {}
    for key in ("heatmaps", "pafs"):
        prediction, target = outputs[key], targets[key]
        if prediction.shape != target.shape:
            raise ValueError(
                f"{key}: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} "
                "differ; encode targets with the codec at the network's input size"
            )
        error = (prediction.float() - target.float()).square() * mask
        losses[key[:-1] + "_loss"] = error.sum() / (2 * prediction.shape[0])
    losses["loss"] = losses["heatmap_loss"] + paf_weight * losses["paf_loss"]
    return losses
