"""Losses of the centre + offset head, outside the model: masked L2 on the heatmaps (as the PAF
head's) plus a smooth L1 on the offsets weighted by 1 / person scale (DEKR's weighting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# smooth L1's quadratic zone, in map cells: offsets are learned to within a fraction of a cell
SMOOTH_L1_BETA = 1.0 / 9


def centre_losses(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    offset_weight: float = 1.0,
    heatmap_fg_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Returns {"heatmap_loss", "offset_loss", "loss" = heatmap_loss + offset_weight *
    offset_loss}, each summed over cells and channels and averaged over the batch.

    outputs: {"heatmaps": (N, M + 1, h, w), "offsets": (N, 2M, h, w)}; targets: the codec's
    {"heatmaps", "offsets", "offset_weight": (N, M, h, w), "mask": (N, 1, h, w)}, optionally
    "heatmap_mask" (N, M + 1, h, w) from `heads.pose2d.loss.keypoint_masks` (data.mix).
    heatmap_fg_weight w > 0 weighs each heatmap cell by 1 + w * its target, as the PAF head's
    loss does for its keypoint channels (here the centre channel too, which has no background).
    """
    for key in ("heatmaps", "offsets"):
        if outputs[key].shape != targets[key].shape:
            raise ValueError(
                f"{key}: prediction {tuple(outputs[key].shape)} and target "
                f"{tuple(targets[key].shape)} differ; encode targets with the codec at the "
                "network's input size and skeleton"
            )
    mask = targets["mask"].float()
    batch = outputs["heatmaps"].shape[0]
    heat_target = targets["heatmaps"].float()
    weight = mask * targets["heatmap_mask"] if "heatmap_mask" in targets else mask
    if heatmap_fg_weight:
        weight = weight * (1 + heatmap_fg_weight * heat_target)
    heat_error = (outputs["heatmaps"].float() - heat_target).square() * weight
    offset_cells = targets["offset_weight"].float().repeat_interleave(2, dim=1) * mask
    offset_error = F.smooth_l1_loss(
        outputs["offsets"].float(),
        targets["offsets"].float(),
        reduction="none",
        beta=SMOOTH_L1_BETA,
    )
    losses = {
        "heatmap_loss": heat_error.sum() / (2 * batch),
        "offset_loss": (offset_error * offset_cells).sum() / batch,
    }
    losses["loss"] = losses["heatmap_loss"] + offset_weight * losses["offset_loss"]
    return losses
