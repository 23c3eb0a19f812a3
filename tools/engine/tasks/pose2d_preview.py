"""TensorBoard pictures for 2D pose training: skeletons (drawn with the demo's `draw_person`),
predicted heatmaps and PAF magnitudes (or, for the centre + offset head, centres) over the input
image."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from selecsls.heads.skeletons import COCO17, Skeleton
from selecsls.tools.visualization.draw import draw_person

from ..distributed import DistInfo
from .base import EvalContext


def to_rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 tensor -> (H, W, 3) contiguous uint8 array."""
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy().astype(np.uint8))


def overlay(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Blend a (h, w) map in [0, 1] (any resolution) over an (H, W, 3) RGB image as a colour map."""
    height, width = image.shape[:2]
    scaled = cv2.resize(np.clip(values, 0, 1), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 0.45, coloured, 0.55, 0)


def draw_skeletons(
    image: np.ndarray, people: np.ndarray, skeleton: Skeleton = COCO17
) -> np.ndarray:
    """Draw (P, K, 3) keypoints of `skeleton` (score/visibility 0 = missing) in place, one
    colour each."""
    people = np.asarray(people).reshape(-1, skeleton.num_keypoints, 3)
    for index, person in enumerate(people):
        draw_person(image, person, colour=None, track_id=index, limbs=skeleton.draw_edges)
    return image


def draw_predictions(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    people: list[tuple[np.ndarray, np.ndarray]],
    input_size: tuple[int, int],
    skeleton: Skeleton = COCO17,
) -> list[np.ndarray]:
    """One (H, 3W, 3) uint8 panel per image: decoded skeletons | heatmaps (max over keypoints) |
    PAF magnitude (max over limbs), or the centre heatmap for a model without PAFs.

    images: (N, 3, H, W) uint8 network inputs; maps: {"heatmaps": (N', M + 1, h, w), "pafs":
    (N', 2L, h, w) or "offsets"} with N' >= N; people: per image (keypoints (P, K, 3) in input
    pixels, scores).
    """
    panels = []
    for n, (keypoints, _) in enumerate(people[: len(images)]):
        image = to_rgb_uint8(images[n])
        heat = maps["heatmaps"][n, : skeleton.num_model_keypoints].amax(0).numpy()
        if "pafs" in maps:
            pafs = maps["pafs"][n].numpy().reshape(-1, 2, *heat.shape)
            strength = np.sqrt((pafs**2).sum(1)).max(0)
        else:  # the centre + offset head: its person centres (the last heatmap channel)
            strength = maps["heatmaps"][n, -1].numpy()
        skeletons = draw_skeletons(image.copy(), keypoints, skeleton)
        maps_drawn = [overlay(image, heat), overlay(image, strength)]
        panels.append(np.concatenate([skeletons, *maps_drawn], 1))
    return panels


def draw_training_inputs(
    images: torch.Tensor, keypoints: list[torch.Tensor], skeleton: Skeleton = COCO17
) -> torch.Tensor:
    """(N, 3, H, W) uint8 augmented inputs + per-image (P, K, 3) targets -> (N, 3, H, W) floats
    in [0, 1] with the ground truth drawn (checks augmentation and the left/right swap by eye)."""
    drawn = [
        draw_skeletons(to_rgb_uint8(image), people.numpy(), skeleton)
        for image, people in zip(images, keypoints)
    ]
    return torch.from_numpy(np.stack(drawn)).permute(0, 3, 1, 2).float() / 255


def preview_count(config: dict, info: DistInfo, ctx: EvalContext | None) -> int:
    """How many val images to draw in this evaluation: config eval.previews (absent: 0) on
    rank 0 when the engine handed a TensorBoard writer, else 0 (no pictures drawn for nothing)."""
    if ctx is None or ctx.writer is None or not info.is_main:
        return 0
    return max(int(config["eval"].get("previews", 0)), 0)


def add_previews(writer, tag: str, panels: list[np.ndarray], step: int) -> None:
    """(H, W, 3) uint8 RGB panels, all one size -> TensorBoard images `tag` at `step`."""
    if writer is None or not panels:
        return
    batch = torch.from_numpy(np.stack(panels)).permute(0, 3, 1, 2).float() / 255
    writer.add_images(tag, batch, step)
