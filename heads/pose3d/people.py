"""Stage I (+ Stage II) outputs of one image -> people with 2D keypoints and 3D poses.

The steps: 2D people from heatmaps + PAFs (`Pose2DCodec`), their 21-joint read-out locations
(`skeletons.coco17_to_joints21_2d`), root-relative 3D poses either read from the location maps
(`Pose3DCodec.decode`) or lifted by Stage II (`lifting`), then absolute placement by a
least-squares fit to the 2D joints (`geometry.place_people`) with the image's intrinsics, or
default ones from the image width.
"""

from __future__ import annotations

import numpy as np

from ..pose2d.codec import Pose2DCodec, invert_points
from ..pose2d.peaks import to_numpy
from ..skeletons import JOINTS21_FROM_OPENPOSE18, JOINTS21_NAMES, coco17_to_joints21_2d
from .codec import Pose3DCodec
from .geometry import place_people
from .lifting import LiftingNet, inputs_from_stage1, lift_people
from .metrics import match_people

# 3D joints whose 2D detection is the joint itself; the head is detected as the nose, which
# sits ~10 cm in front of it, so it is left out of the depth fit.
_FIT_JOINTS = np.array(
    [k >= 0 and n != "head" for n, k in zip(JOINTS21_NAMES, JOINTS21_FROM_OPENPOSE18)]
)


def predict_people3d(
    outputs: dict,
    codec2d: Pose2DCodec,
    codec3d: Pose3DCodec,
    lifting: LiftingNet | None = None,
    transform: np.ndarray | None = None,
    f=None,
    c=None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """One image's {"heatmaps": (19, h, w), "pafs": (38, h, w), "locmaps": (63, h, w)} ->
    {"keypoints": (P, 17, 3) COCO, "scores": (P,), "points2d": (P, 21, 3), "pose3d": (P, 21, 3)
    root-relative mm, "pose3d_camera": (P, 21, 3) camera mm}. 2D outputs are in original pixels
    when `transform` (2x3, original -> input) is given; f, c are the original image's intrinsics
    (default from image_size (W, H) of the original image)."""
    keypoints, scores = codec2d.decode_outputs(outputs)  # input pixels, either 2D head's codec
    points2d = coco17_to_joints21_2d(keypoints)
    locmaps = to_numpy(outputs["locmaps"])
    if lifting is not None:
        poses = lift_people(lifting, inputs_from_stage1(locmaps, points2d, codec3d))
    else:
        poses, _ = codec3d.decode(locmaps, points2d)
    if transform is not None:
        for array in (keypoints, points2d):
            found = array[..., 2] > 0
            array[..., :2] = np.where(found[..., None], invert_points(transform, array[..., :2]), 0)
    fit_points = points2d.copy()
    fit_points[..., ~_FIT_JOINTS, 2] = 0
    camera = place_people(poses, fit_points, f, c, image_size) if len(poses) else poses
    return {
        "keypoints": keypoints,
        "scores": scores,
        "points2d": points2d,
        "pose3d": poses,
        "pose3d_camera": camera,
    }


def stage2_training_pairs(
    locmaps,
    points2d: np.ndarray,
    gt_joints3d: np.ndarray,
    gt_points2d: np.ndarray,
    codec3d: Pose3DCodec,
    max_relative_distance: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Stage II examples from Stage I outputs: detected people (P, 21, 3) (input pixels, e.g.
    `coco17_to_joints21_2d` of the 2D decode) matched by 2D proximity to 3D-labelled ground
    truth (G, 21, 3) mm + (G, 21, 3) 2D. Returns (inputs (M, 14, 66), joints3d (M, 21, 3) mm)
    for the M matched people whose ground truth has every joint labelled; feed the joints to
    `lifting.lifting_targets`."""
    match = match_people(points2d, gt_points2d, max_relative_distance)
    gt_joints3d = np.asarray(gt_joints3d, np.float64).reshape(-1, len(JOINTS21_NAMES), 3)
    keep = [g for g, q in enumerate(match) if q >= 0 and np.isfinite(gt_joints3d[g]).all()]
    if not keep:
        return np.zeros((0, 14, 66), np.float32), np.zeros((0, len(JOINTS21_NAMES), 3))
    people = np.asarray(points2d)[match[keep]]
    return inputs_from_stage1(locmaps, people, codec3d), gt_joints3d[keep]
