"""LiftingTask's data: ground-truth-derived Stage II batches (with a random yaw), Stage II pairs
from a frozen Stage I, and the lift_* evaluation on held-out people."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from selecsls.datasets.synthetic_people import FACE_FACING_MIN
from selecsls.datasets.synthetic_render import facing_camera
from selecsls.heads.pose3d.codec import Pose3DCodec
from selecsls.heads.pose3d.geometry import project
from selecsls.heads.pose3d.lifting import inputs_from_ground_truth, lift_people, lifting_targets
from selecsls.heads.pose3d.lifting_points import nose_in_3d, turned_keypoints
from selecsls.heads.pose3d.metrics import Pose3DEvaluator
from selecsls.heads.pose3d.people import stage2_training_pairs
from selecsls.heads.skeletons import JOINTS21_NAMES, JOINTS21_ROOT, coco17_to_joints21_2d

from .pose3d_eval import summary

NOISE_KEYS = ("noise2d", "noise_near", "noise_far", "drop")


def ground_truth_batch(people: dict[str, torch.Tensor], data: dict[str, Any]) -> dict:
    """Stacked people (`datasets.mix3d.Multi3DPeople`) -> {"inputs": (B, 14, 66) and
    `lifting_targets`' tensors}: each person turned by a random yaw (data.yaw), then Stage I
    outputs simulated with noise (data.noise2d, noise_near, noise_far, drop). With the people's
    COCO "keypoints" (B, 17, 3) the 2D points are made as at inference (head = nose; see
    `heads.pose3d.lifting_points`); without them the head point is the head centre. "coco_labelled"
    (B,) marks people labelled COCO-style (face points wherever visible): no nose, no head point."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
    joints = people["joints3d"].numpy().astype(np.float64)
    points = people["points2d"].numpy().astype(np.float64)
    keypoints = people.get("keypoints")
    if keypoints is not None:
        keypoints = keypoints.numpy().astype(np.float64)
    f, c = people["camera_f"].numpy(), people["camera_c"].numpy()
    joints, points, keypoints = random_yaw(joints, points, f, c, data["yaw"], rng, keypoints)
    noise = {k: data[k] for k in NOISE_KEYS}
    face_labelled = people["coco_labelled"].numpy() > 0 if "coco_labelled" in people else None
    inputs = inputs_from_ground_truth(joints, points, rng, keypoints, face_labelled, **noise)
    out = {k: torch.from_numpy(v) for k, v in lifting_targets(joints).items()}
    return {"inputs": torch.from_numpy(inputs), **out}


def random_yaw(
    joints: np.ndarray,
    points: np.ndarray,
    f: np.ndarray,
    c: np.ndarray,
    degrees: float,
    rng: np.random.Generator,
    keypoints: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Turn each (B, 21, 3) camera-mm pose about the vertical through its pelvis by up to
    +-degrees and re-project its (B, 21, 3) 2D points with its camera f, c (B, 2): a new view of
    the same pose, consistent in 2D and 3D. COCO keypoints (B, 17, 3), if given, are turned too
    (the nose placed in 3D by `lifting_points.nose_in_3d`, turned with the head, and dropped
    when the turn takes the face away from the camera, as the generator labels noses); returns
    (joints, points, keypoints)."""
    if degrees <= 0:
        return joints, points, keypoints
    angle = np.radians(rng.uniform(-degrees, degrees, len(joints)))
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    root = joints[:, JOINTS21_ROOT : JOINTS21_ROOT + 1]
    # the nose travels as a 22nd point (NaN where unlabelled)
    nose = np.full((len(joints), 1, 3), np.nan)
    if keypoints is not None:
        nose[:, 0] = nose_in_3d(joints, keypoints, f, c)
    rel = np.concatenate([joints, nose], axis=1) - root
    turned = rel.copy()
    turned[..., 0] = cos * rel[..., 0] + sin * rel[..., 2]
    turned[..., 2] = -sin * rel[..., 0] + cos * rel[..., 2]
    turned += root
    joints, nose = turned[:, :-1], turned[:, -1]
    points = points.copy()
    nose2d = np.full((len(joints), 2), np.nan)
    head = joints[:, JOINTS21_NAMES.index("head")]
    for b in range(len(joints)):
        points[b, :, :2] = project(joints[b], f[b], c[b])
        if nose[b, 2] > 0 and facing_camera(nose[b], head[b]) > FACE_FACING_MIN[0]:
            nose2d[b] = project(nose[b], f[b], c[b])
    points[..., 2] = (points[..., 2] > 0) & (joints[..., 2] > 0)
    if keypoints is not None:
        keypoints = turned_keypoints(keypoints, points, nose2d)
    return joints, points, keypoints


def stage1_batch(
    model: nn.Module, batch: dict[str, Any], codec: Any, codec3d: Pose3DCodec
) -> dict[str, torch.Tensor]:
    """The frozen Stage I's people on the batch's images (eval mode, no gradient), matched to the
    3D ground truth (`pose3d.stage2_training_pairs`) -> the same keys as ground_truth_batch.
    codec: the 2D codec of the Stage I's 2D head (PAF or centre + offset)."""
    core = getattr(model, "module", model)
    core.backbone.eval()
    for name, head in core.heads.items():
        if name != "lifting":
            head.eval()
    with torch.no_grad():
        outputs = core(batch["images"])
    maps = {k: outputs[k].float().cpu() for k in (*codec.output_keys, "locmaps")}
    inputs, joints = [], []
    for n in range(len(maps["locmaps"])):
        keypoints, _ = codec.decode_outputs({k: v[n] for k, v in maps.items()})
        labelled = batch["has_3d"][n].numpy().astype(bool)
        pair = stage2_training_pairs(
            maps["locmaps"][n],
            coco17_to_joints21_2d(keypoints),
            batch["joints3d"][n].numpy()[labelled],
            batch["points2d"][n].numpy()[labelled],
            codec3d,
        )
        inputs.append(pair[0])
        joints.append(pair[1].reshape(-1, 21, 3))
    device = batch["images"].device
    targets = lifting_targets(np.concatenate(joints))
    out = {k: torch.from_numpy(v).to(device) for k, v in targets.items()}
    return {"inputs": torch.from_numpy(np.concatenate(inputs)).to(device), **out}


def evaluate_lifting(net: nn.Module, loader: Any, data: dict, seed: int) -> dict[str, float]:
    """lift_* metrics: Stage II alone on the val people (image batches of Multi3DDataset), inputs
    from their ground truth with noise drawn from (seed, image id), so every evaluation sees the
    same inputs; 2D points from the people's COCO keypoints as at inference (head = nose); every
    person counts as matched."""
    noise = {k: data[k] for k in NOISE_KEYS}
    evaluator = Pose3DEvaluator()
    for batch in loader:
        for n, image_id in enumerate(batch["image_id"]):
            joints = batch["joints3d"][n].numpy().astype(np.float64)
            points = batch["points2d"][n].numpy().astype(np.float64)
            keep = batch["has_3d"][n].numpy().astype(bool) & np.isfinite(joints).all((1, 2))
            if not keep.any():
                continue
            keypoints = batch["keypoints"][n].numpy()[keep]
            face_labelled = batch["coco_labelled"][n].numpy()[keep]
            rng = np.random.default_rng([seed, int(image_id)])
            inputs = inputs_from_ground_truth(
                joints[keep], points[keep], rng, keypoints, face_labelled, **noise
            )
            poses = lift_people(net, inputs)
            evaluator.add_image(poses, points[keep], joints[keep], points[keep])
    return {f"lift_{k}": v for k, v in summary(evaluator).items()}
