"""Masked L2 loss on heatmaps and PAFs (the lightweight OpenPose recipe), outside the model.

Per-keypoint masking (`keypoint_masks`): a data set may not label some keypoint TYPES at all for
some people (MuCo-3DHP people have no face keypoints: their COCO keypoints are made from the 3D
joints, which have no eyes or ears). Without a mask such a person's nose would be trained as
background. The mask is 0, for the heatmap channels of the types the person's annotation lacks,
for the background channel and for the PAF channels of limbs that touch those types, on the map
cells of the person's region (the box of all its labelled 2D points, grown by `margin`), and 1
everywhere else. COCO-labelled people (every type labellable; v = 0 there means "not present")
never get such masks, so COCO training is unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from .codec import Pose2DCodec

# target key -> its optional per-channel mask key (from keypoint_masks)
CHANNEL_MASKS = {"heatmaps": "heatmap_mask", "pafs": "paf_mask"}


def pose2d_losses(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    paf_weight: float = 1.0,
    heatmap_fg_weight: float = 0.0,
    paf_fg_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Masked squared error summed over cells and channels, halved, averaged over the batch.

    outputs: {"heatmaps": (N, M + 1, h, w), "pafs": (N, 2L, h, w)} from the head (19 and 38
    channels for COCO); targets: the codec's {"heatmaps", "pafs", "mask": (N, 1, h, w)} (mask 0
    where crowds or unannotated people lie), optionally "heatmap_mask" (N, M + 1, h, w) and
    "paf_mask" (N, 2L, h, w) from
    `keypoint_masks` (multiplied in). Returns {"heatmap_loss", "paf_loss", "loss" =
    heatmap_loss + paf_weight * paf_loss}.
    Summing (not averaging) over cells keeps the gradient per person independent of the image
    size, as in the reference recipe whose learning rates assume it.

    heatmap_fg_weight w > 0 weighs each heatmap cell by 1 + w * its target (for the background
    channel: 1 + w * (1 - target)), i.e. up to (1 + w)x near keypoints: the few cells where peaks
    are learned otherwise count for little beside the background. Measured on the synthetic
    quickstart from scratch (docs/pose2d.md, "Third sweep"): w = 5-10 gave 2-3x the AP after 12
    epochs, 1.4x after 24, 1.2x after 48; w = 0 is the plain masked L2 of the reference recipe.
    paf_fg_weight does the same for the PAFs: both channels of a limb weigh 1 + w * the length of
    its target vector (1 inside the limb's band, 0 outside). On the 2D quickstart (heatmap w = 10,
    12 epochs, CPU) it changed nothing beyond run-to-run spread: AP 0.137 at 5, 0.110 at 10,
    against 0.128 at 0.
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
        weight = mask
        if CHANNEL_MASKS[key] in targets:
            weight = mask * targets[CHANNEL_MASKS[key]]
        if key == "heatmaps" and heatmap_fg_weight:
            weight = weight * (1 + heatmap_fg_weight * keypoint_closeness(target))
        if key == "pafs" and paf_fg_weight:
            weight = weight * (1 + paf_fg_weight * limb_closeness(target))
        error = (prediction.float() - target.float()).square() * weight
        losses[key[:-1] + "_loss"] = error.sum() / (2 * prediction.shape[0])
    losses["loss"] = losses["heatmap_loss"] + paf_weight * losses["paf_loss"]
    return losses


def keypoint_closeness(heatmaps: torch.Tensor) -> torch.Tensor:
    """(N, M + 1, h, w) target heatmaps -> how close each cell is to a keypoint of the channel's
    type, in [0, 1]: the target itself, and for the background channel (last) 1 - background, i.e.
    closeness to any keypoint."""
    closeness = heatmaps.float().clone()
    closeness[:, -1] = 1 - closeness[:, -1]
    return closeness


def limb_closeness(pafs: torch.Tensor) -> torch.Tensor:
    """(N, 2L, h, w) target PAFs -> (N, 2L, h, w): each limb's target vector length, in [0, 1]
    (averaged overlapping limbs are shorter), repeated for its x and y channels."""
    n, channels, h, w = pafs.shape
    length = pafs.float().reshape(n, channels // 2, 2, h, w).norm(dim=2, keepdim=True)
    return length.expand(n, channels // 2, 2, h, w).reshape(n, channels, h, w)


def keypoint_masks(
    region_points: np.ndarray,
    unlabelled: np.ndarray,
    input_size: tuple[int, int],
    codec: Pose2DCodec,
    margin: float | None = None,
) -> dict[str, np.ndarray]:
    """Per-channel loss masks for people whose annotation lacks some keypoint types.

    region_points: (P, M, 3) any 2D points of each person (x, y, v) in input pixels, v > 0 where
    labelled (e.g. its COCO keypoints and projected 3D joints together); unlabelled: (P, K) bool,
    the types (annotation order of the codec's skeleton) the person's annotation cannot provide;
    input_size (W, H); margin: input pixels added around each person's box (default 2 sigma, the
    reach of a Gaussian).
    Returns {"heatmap_mask": (M + 1, h, w), "paf_mask": (2L, h, w)} float32 (module docstring).
    """
    width, height = codec.map_size(input_size)
    skeleton = codec.keypoint_skeleton
    heat = np.ones((skeleton.num_heatmaps, height, width), np.float32)
    paf = np.ones((skeleton.num_pafs, height, width), np.float32)
    unlabelled = np.asarray(unlabelled, bool).reshape(-1, skeleton.num_keypoints)
    points = np.asarray(region_points, np.float32)
    points = points.reshape(len(unlabelled), points.shape[-2] if points.ndim > 1 else 0, 3)
    margin = 2 * codec.sigma if margin is None else margin
    source = np.array(skeleton.model_from_annotation)
    limbs = np.array(skeleton.limb_indices)
    xs, ys = codec.cell_centres(width), codec.cell_centres(height)
    for person, lacks in zip(points, unlabelled):
        labelled = person[person[:, 2] > 0, :2]
        if not lacks.any() or len(labelled) == 0:
            continue
        # model types the person lacks (derived points, e.g. the neck, are made when present)
        lacks_model = np.where(source >= 0, lacks[np.maximum(source, 0)], False)
        low, high = labelled.min(0) - margin, labelled.max(0) + margin
        inside = ((ys >= low[1]) & (ys <= high[1]))[:, None] & ((xs >= low[0]) & (xs <= high[0]))
        channels = np.flatnonzero(np.append(lacks_model, True))  # + the background
        heat[channels] *= ~inside
        limb_lacks = np.flatnonzero(lacks_model[limbs[:, 0]] | lacks_model[limbs[:, 1]])
        for limb in limb_lacks:
            paf[2 * limb : 2 * limb + 2] *= ~inside
    return {"heatmap_mask": heat, "paf_mask": paf}
