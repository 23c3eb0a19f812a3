"""XNect Stage II: the per-person lifting network and its inputs (DESIGN.md section 4).

Input per person: for each of the 14 Stage II joints (`skeletons.STAGE2_JOINTS`: head, neck, arms,
legs) the row (u, v, confidence, 63 location-map values read at that joint), shape (14, 66):
- (u, v): the joint's 2D position minus the neck's, divided by the person's 2D size (RMS distance
  of its detected joints from the neck), so the input is free of image scale;
- confidence: the 2D detection score in [0, 1] (0 for an undetected joint, whose row is all 0);
- the read-out: all 63 Stage I channels at the joint (metres, root-relative; `heads.pose3d.codec`).
Layers: a convolution spanning all 14 joints (= fully connected) -> 160, then 256, 256, 128, each
with BN + ReLU, then 64 = 63 pose values + 1 scale. The pose is root-relative and normalised by the
scale (the RMS distance of the joints from the pelvis, metres); the metric pose is pose x scale.
Auxiliary outputs from the second 256-wide layer (deep supervision): the normalised root-relative
pose again and the parent-relative bone vectors (joint - parent, normalised).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..prune import FilledHead
from ..skeletons import JOINTS21_NAMES, JOINTS21_PARENTS, NECK, STAGE2_JOINTS
from .codec import READOUT_SOURCES, Pose3DCodec, root_relative
from .lifting_points import stage2_points

NUM_JOINTS = len(JOINTS21_NAMES)
READOUT_CHANNELS = 3 * NUM_JOINTS
INPUT_WIDTH = 3 + READOUT_CHANNELS  # u, v, confidence, 63 read-out values
TYPICAL_SCALE = 0.6  # metres: RMS joint distance from the pelvis of an adult
_PARENTS = np.array([p if p >= 0 else j for j, p in enumerate(JOINTS21_PARENTS)])
STAGE2_NECK = STAGE2_JOINTS.index(NECK)  # the neck is joint 1 in both orders


def _fc_bn_relu(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        nn.ReLU(inplace=True),
    )


class LiftingNet(nn.Module):
    """(N, 14, 66) -> {"pose": (N, 21, 3), "scale": (N,), "aux_root": (N, 21, 3),
    "aux_parent": (N, 21, 3)}; pose and aux outputs are normalised by the scale (see module)."""

    def __init__(self, num_joints: int = len(STAGE2_JOINTS), widths=(160, 256, 256, 128)) -> None:
        super().__init__()
        self.num_joints, self.widths = num_joints, tuple(widths)
        # the "convolution spanning all joints" is a linear layer over the flattened (14 x 66)
        # rows: the same function, and several times faster than Conv1d on CPU
        self.joint_conv = _fc_bn_relu(num_joints * INPUT_WIDTH, widths[0])
        self.hidden = nn.Sequential(_fc_bn_relu(widths[0], widths[1]), _fc_bn_relu(*widths[1:3]))
        self.last = _fc_bn_relu(widths[2], widths[3])
        self.out = nn.Linear(widths[3], READOUT_CHANNELS + 1)
        self.aux = nn.Linear(widths[2], 2 * READOUT_CHANNELS)
        with torch.no_grad():  # start at a plausible size
            self.out.bias[-1] = TYPICAL_SCALE

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        n = inputs.shape[0]
        x = self.joint_conv(inputs.flatten(1))  # (N, 160)
        x = self.hidden(x)
        aux = self.aux(x).reshape(n, 2, NUM_JOINTS, 3)
        out = self.out(self.last(x))
        return {
            "pose": out[:, :READOUT_CHANNELS].reshape(n, NUM_JOINTS, 3),
            "scale": out[:, -1],
            "aux_root": aux[:, 0],
            "aux_parent": aux[:, 1],
        }


class LiftingHead(nn.Module):
    """Stage II as a head of the Stage I model, so one checkpoint (`heads.weights.save_model`,
    config heads {"xnect3d": {}, "lifting": {}}) holds Stage I + II and `load_model` rebuilds both.

    Stage II works on decoded people, not on feature maps: `forward(features)` returns nothing
    (the exported network is Stage I alone) and `self.net` (a LiftingNet) is applied per person
    after decoding (`heads.pose3d.people.predict_people3d(..., lifting=head.net)`)."""

    def __init__(self, feature_specs=None, widths=(160, 256, 256, 128)) -> None:
        super().__init__()
        self.net = LiftingNet(widths=tuple(widths))

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}


def find_lifting(model: nn.Module) -> LiftingNet | None:
    """The LiftingNet of a Model with a "lifting" head (DDP / torch.compile wrappers looked
    through), or None. Pruning leaves the head as it is (`prune.HEAD_PRUNERS`); only files
    pruned before that still wrap it in a `prune.FilledHead`."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    heads = getattr(model, "heads", {})
    if "lifting" not in heads:
        return None
    head = heads["lifting"]
    return (head.head if isinstance(head, FilledHead) else head).net


def lifting_targets(joints3d: np.ndarray) -> dict[str, np.ndarray]:
    """(P, 21, 3) mm (camera or root-relative) -> {"pose", "aux_root", "aux_parent": (P, 21, 3),
    "scale": (P,)} float32 targets in the network's normalised units."""
    rel = root_relative(joints3d) / 1000.0
    scale = np.sqrt((rel**2).sum(-1).mean(-1))  # (P,)
    pose = rel / np.maximum(scale, 1e-6)[:, None, None]
    parent = pose - pose[:, _PARENTS]
    out = {"pose": pose, "aux_root": pose, "aux_parent": parent, "scale": scale}
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def lifting_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], aux_weight: float = 0.5
) -> dict[str, torch.Tensor]:
    """Mean squared errors; {"pose", "scale", "aux", "total"}."""
    pose = (outputs["pose"] - targets["pose"]).pow(2).mean()
    scale = (outputs["scale"] - targets["scale"]).pow(2).mean()
    aux = (outputs["aux_root"] - targets["aux_root"]).pow(2).mean()
    aux = aux + (outputs["aux_parent"] - targets["aux_parent"]).pow(2).mean()
    return {"pose": pose, "scale": scale, "aux": aux, "total": pose + scale + aux_weight * aux}


def to_millimetres(outputs: dict[str, torch.Tensor]) -> np.ndarray:
    """Network outputs -> (N, 21, 3) root-relative poses in mm."""
    pose = outputs["pose"] * outputs["scale"][:, None, None] * 1000.0
    return pose.detach().cpu().numpy().astype(np.float64)


def build_inputs(points2d: np.ndarray, readout: np.ndarray) -> np.ndarray:
    """(P, 21, 3) 2D detections (x, y, score) and (P, 14, 63) read-out -> (P, 14, 66) float32."""
    points = np.asarray(points2d, np.float64).reshape(-1, NUM_JOINTS, 3)[:, list(STAGE2_JOINTS)]
    score = np.clip(points[..., 2], 0.0, 1.0)
    ok = (score > 0)[..., None]  # (P, 14, 1)
    count = np.maximum(ok.sum(1), 1)  # (P, 1)
    # the neck anchors (u, v); without one, the centroid of the detected joints does
    centroid = (points[..., :2] * ok).sum(1) / count
    centre = np.where(ok[:, STAGE2_NECK], points[:, STAGE2_NECK, :2], centroid)
    offsets = (points[..., :2] - centre[:, None]) * ok
    size = np.sqrt((offsets**2).sum((1, 2)) / count[:, 0])[:, None, None]
    out = np.concatenate(
        [offsets / np.maximum(size, 1e-6), score[..., None], np.asarray(readout, np.float64)],
        axis=-1,
    )
    return (out * ok).astype(np.float32)


def inputs_from_stage1(locmaps, points2d: np.ndarray, codec: Pose3DCodec) -> np.ndarray:
    """One image's location maps (63, h, w) and people (P, 21, 3) in input pixels -> inputs."""
    return build_inputs(points2d, codec.read_all(locmaps, points2d, STAGE2_JOINTS))


def inputs_from_ground_truth(
    joints3d: np.ndarray,
    points2d: np.ndarray,
    rng: np.random.Generator,
    keypoints: np.ndarray | None = None,
    face_labelled: np.ndarray | None = None,
    noise2d: float = 0.02,
    noise_near: float = 0.05,
    noise_far: float = 0.25,
    drop: float = 0.1,
) -> np.ndarray:
    """Stage II inputs simulated from ground truth, for training without Stage I.

    joints3d (P, 21, 3) mm; points2d (P, 21, 3) projected 2D (v > 0 = labelled); keypoints
    (P, 17, 3) the people's COCO keypoints in the same pixels, if known: the 2D points are then
    made from them as at inference (head = nose, neck = mid-shoulders;
    `lifting_points.stage2_points`), the projected joints only stand in for unlabelled
    keypoints. Without keypoints the head row is the head centre, ~10 cm from the nose that
    inference feeds: pass them whenever the data has them. face_labelled (P,) bool marks the
    people whose keypoints label face points wherever visible (see `stage2_points`).

    The read-out at joint k holds each joint j's root-relative position (metres) plus noise:
    noise_near (m, sd) where Stage I supervises j's channels at k (k is j or a kinematic
    neighbour), noise_far elsewhere (Stage I's values there are unsupervised). 2D points get
    noise of noise2d x the person's 2D size; each joint is dropped (undetected) with probability
    `drop`; scores are U(0.3, 1).
    """
    points = stage2_points(points2d, keypoints, face_labelled)
    people = len(points)
    rel = root_relative(joints3d).reshape(people, 1, NUM_JOINTS, 3) / 1000.0
    near = np.zeros((len(STAGE2_JOINTS), NUM_JOINTS), bool)  # near[k, j]: j supervised at k
    for j, sources in enumerate(READOUT_SOURCES):
        for k in sources:
            if k in STAGE2_JOINTS:
                near[STAGE2_JOINTS.index(k), j] = True
    sd = np.where(near, noise_near, noise_far)[None, :, :, None]
    readout = rel + rng.normal(size=(people, len(STAGE2_JOINTS), NUM_JOINTS, 3)) * sd
    labelled = points[..., 2] > 0
    low = np.where(labelled[..., None], points[..., :2], np.inf).min(1)
    high = np.where(labelled[..., None], points[..., :2], -np.inf).max(1)
    extent = np.nan_to_num((high - low).max(1), posinf=0.0, neginf=0.0)  # (P,) 2D size
    points[..., :2] += rng.normal(size=(people, NUM_JOINTS, 2)) * (noise2d * extent)[:, None, None]
    keep = labelled & (rng.random(labelled.shape) >= drop)
    points[..., 2] = np.where(keep, rng.uniform(0.3, 1.0, labelled.shape), 0.0)
    return build_inputs(points, readout.reshape(people, len(STAGE2_JOINTS), -1))


@torch.no_grad()
def lift_people(net: LiftingNet, inputs: np.ndarray) -> np.ndarray:
    """(P, 14, 66) inputs -> (P, 21, 3) root-relative poses in mm (net in eval mode)."""
    if len(inputs) == 0:
        return np.zeros((0, NUM_JOINTS, 3))
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    poses = to_millimetres(net(torch.as_tensor(inputs, device=device)))
    net.train(was_training)
    return poses
