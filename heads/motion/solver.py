"""One frame's skeleton fit for a batch of people: damped Gauss-Newton on XNect Stage III's energy.

Energy per person (every residual in millimetres, or radians for the limits):
- 3D: w3d * c_j * (x_j - X_j) for the input 3D joints X_j with confidence c_j (0 = missing);
- 2D: w2d * s_j * (pi(x_j) - u_j) * z_j / f: the reprojection error in pixels scaled to mm at
  the joint's depth, so that one weight scale serves both terms (s_j = the 2D score);
- smoothness: w_smooth * (x_j - (2 x_j[t-1] - x_j[t-2])): the fitted joints' acceleration
  (mm / frame^2, what TCMR's acceleration error measures), or their velocity on a track's
  second frame;
- limits: w_limits * (how far each joint angle lies outside its range, `limits`);
- root depth: w_depth * (z_root - z_root[t-1]), as XNect penalises depth jumps (depth is the
  worst-determined coordinate of a monocular estimate);
- foot contact: w_contact * c_j * (x_j - x_j[t-1]) for a foot the caller marks as standing
  (`fitter`: its fitted speed was under `contact_speed`; c_j falls from 1 as the input foot
  moves away by more than `contact_release` x the input's jitter): the foot is pinned where it
  stood, so per-frame input noise cannot slide it (the smoothness term alone only keeps its
  velocity constant).
The solve is warm-started (the caller passes the previous frame's pose) and runs a fixed
number of Marquardt-damped Gauss-Newton steps with an analytic position Jacobian (`kinematics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kinematics import (
    DRIVEN,
    NUM_JOINTS,
    NUM_PARAMS,
    Pose,
    apply_update,
    forward_kinematics,
    position_jacobian,
)
from .limits import limit_angles, limit_excess, outside_residuals
from .rotations import exp_map

_LIMIT_INDEX = 6 + 3 * np.arange(len(DRIVEN))[:, None] + np.arange(3)  # (D, 3) parameter ids


@dataclass
class FitWeights:
    """Weights of the energy terms (see the module docstring for units) and the solver's steps.

    XNect's release weights (3D 0.85, 2D 25e-6, smoothness 1e-5, limits 1, depth 6e-10) are in
    its own units; these are ours, chosen on the synthetic sequences (docs/motion.md)."""

    w3d: float = 1.0
    w2d: float = 1.0
    w_smooth: float = 1.0
    w_limits: float = 2000.0
    w_depth: float = 0.5
    w_contact: float = 5.0
    contact_speed: float = 35.0  # mm/frame: a fitted foot slower than this stands (1 m/s at 30 fps)
    contact_release: float = 1.5  # x the input jitter (mm): this far from the pin halves it
    iterations: int = 3
    first_iterations: int = 12
    damping: float = 1e-3


@dataclass
class FrameInputs:
    """One frame's inputs for P people: joints3d (P, 21, 3) camera mm and conf3d (P, 21) (0 =
    missing); points2d (P, 21, 2) pixels and conf2d (P, 21); f, c (2,) intrinsics; predicted
    (P, 21, 3) joints the smoothness term pulls towards and has_prediction (P,) weights (0 on a
    track's first frame); depth_prev (P,) last root depth (NaN: none); contact (P, 21) 1 for a
    standing foot, pinned to anchor (P, 21, 3), its last fitted position (None: no contact)."""

    joints3d: np.ndarray
    conf3d: np.ndarray
    points2d: np.ndarray
    conf2d: np.ndarray
    f: np.ndarray
    c: np.ndarray
    predicted: np.ndarray
    has_prediction: np.ndarray
    depth_prev: np.ndarray
    contact: np.ndarray | None = None
    anchor: np.ndarray | None = None


class _Terms:
    """A frame's per-person constants of the energy, computed once per solve: the 3D and
    smoothness terms folded into one weight a and target (a x - target is their gradient per
    joint), the 2D weights, and whether any 2D point counts."""

    def __init__(self, data: FrameInputs, w: FitWeights) -> None:
        w3 = (w.w3d * data.conf3d) ** 2  # (P, 21)
        ws = (w.w_smooth**2) * data.has_prediction[:, None]  # (P, 1)
        self.a = w3 + ws  # (P, 21)
        self.target = w3[..., None] * data.joints3d + ws[..., None] * data.predicted
        self.wc = None
        if data.contact is not None and data.contact.any():  # one more pull per joint: folded in
            self.wc = (w.w_contact**2) * data.contact  # (P, 21)
            self.a = self.a + self.wc
            self.target = self.target + self.wc[..., None] * data.anchor
        self.w3, self.ws = w3, ws[:, 0]
        self.rows3 = np.repeat(self.a, 3, axis=1)[..., None]  # (P, 63, 1)
        self.w2 = (w.w2d * data.conf2d) ** 2  # (P, 21)
        self.has2d = bool(data.conf2d.any())
        self.rows2 = np.repeat(self.w2, 2, axis=1)[..., None]  # (P, 42, 1)
        self.has_depth = np.isfinite(data.depth_prev)
        self.depth_weight = np.where(self.has_depth, w.w_depth**2, 0.0)
        self.depth_prev = np.where(self.has_depth, data.depth_prev, 0.0)


def _reprojection(joints, data: FrameInputs):
    """(depth (P, 21), residual (P, 21, 2)): the 2D error in pixels scaled to mm at the depth."""
    depth = np.maximum(joints[..., 2], 1.0)  # (P, 21)
    pixels = data.f * joints[..., :2] / depth[..., None] + data.c
    return depth, (pixels - data.points2d) * depth[..., None] / data.f


def _data_terms(joints, jac, data: FrameInputs, w: FitWeights, terms: _Terms | None = None):
    """Normal equations (H (P, n, n), g (P, n)) of the 3D, smoothness and 2D terms."""
    terms = terms or _Terms(data, w)
    count = len(joints)
    b = terms.a[..., None] * joints - terms.target  # (P, 21, 3)
    flat = jac.reshape(count, NUM_JOINTS * 3, NUM_PARAMS)
    weighted = np.swapaxes(flat * terms.rows3, 1, 2)  # (P, n, 63)
    hessian = weighted @ flat
    gradient = (np.swapaxes(flat, 1, 2) @ b.reshape(count, -1, 1))[..., 0]
    if not terms.has2d:
        return hessian, gradient
    depth, residual = _reprojection(joints, data)
    # d residual / d x with the depth scale held fixed: [[1, 0, -x/z], [0, 1, -y/z]]
    ratio = joints[..., :2] / depth[..., None]  # (P, 21, 2)
    jac2 = (jac[:, :, :2] - ratio[..., None] * jac[:, :, 2:3]).reshape(count, -1, NUM_PARAMS)
    weighted = np.swapaxes(jac2 * terms.rows2, 1, 2)  # (P, n, 42)
    hessian += weighted @ jac2
    gradient += (weighted @ residual.reshape(count, -1, 1))[..., 0]
    return hessian, gradient


def _prior_terms(
    pose: Pose, hessian, gradient, data: FrameInputs, w: FitWeights, angles=None, terms=None
) -> None:
    """Add the joint-limit and root-depth terms to the normal equations (in place)."""
    terms = terms or _Terms(data, w)
    local = pose.local[:, DRIVEN]
    if angles is None:
        angles = limit_angles(local)
    excess = limit_excess(angles)
    if excess.any():  # only the bones outside a range have a residual and a Jacobian
        people, bones, excess, jac = outside_residuals(local, angles, excess)  # (K, 3), (K, 3, 3)
        scale = w.w_limits**2
        jac_t = np.swapaxes(jac, -1, -2)
        rows = _LIMIT_INDEX[bones]  # (K, 3) parameter ids; one bone appears once per person
        hessian[people[:, None, None], rows[:, :, None], rows[:, None, :]] += scale * (jac_t @ jac)
        gradient[people[:, None], rows] += scale * (jac_t @ excess[..., None])[..., 0]
    hessian[:, 2, 2] += terms.depth_weight
    gradient[:, 2] += terms.depth_weight * (pose.root[:, 2] - terms.depth_prev)


def energy(pose: Pose, offsets: np.ndarray, data: FrameInputs, w: FitWeights) -> np.ndarray:
    """(P,) the energy of a pose: the sum of all squared weighted residuals (module docstring)."""
    return _energy(pose, forward_kinematics(pose, offsets)[0], data, w)


def _energy(pose: Pose, joints, data: FrameInputs, w: FitWeights, angles=None, terms=None):
    terms = terms or _Terms(data, w)
    e = (terms.w3 * ((joints - data.joints3d) ** 2).sum(-1)).sum(-1)
    e += terms.ws * ((joints - data.predicted) ** 2).sum((1, 2))
    if terms.wc is not None:
        e += (terms.wc * ((joints - data.anchor) ** 2).sum(-1)).sum(-1)
    if terms.has2d:
        e += (terms.w2 * (_reprojection(joints, data)[1] ** 2).sum(-1)).sum(-1)
    if angles is None:
        angles = limit_angles(pose.local[:, DRIVEN])
    e += w.w_limits**2 * (limit_excess(angles) ** 2).sum((1, 2))
    return e + terms.depth_weight * (pose.root[:, 2] - terms.depth_prev) ** 2


def solve_frame(
    pose: Pose,
    offsets: np.ndarray,
    data: FrameInputs,
    w: FitWeights,
    iterations: int,
    return_joints: bool = False,
):
    """`iterations` Levenberg-Marquardt steps from `pose` (P people) -> the fitted Pose (and,
    with return_joints, its joints (P, 21, 3) and bone frames (P, 21, 3, 3), as
    `forward_kinematics` gives them).

    Each person's damping adapts: a step that raises their energy is undone and their damping
    grows tenfold, an accepted one shrinks it, so a start far from the answer (a new track, a
    pose far outside the limits) cannot throw the fit off."""
    terms = _Terms(data, w)
    diagonal_index = np.arange(NUM_PARAMS)
    damping = np.full(len(pose.root), w.damping)
    joints, frames = forward_kinematics(pose, offsets)
    angles = limit_angles(pose.local[:, DRIVEN])
    current = _energy(pose, joints, data, w, angles, terms)
    for _ in range(iterations):
        jac = position_jacobian(joints, frames)
        hessian, gradient = _data_terms(joints, jac, data, w, terms)
        _prior_terms(pose, hessian, gradient, data, w, angles, terms)
        # Marquardt: damp each parameter by its own curvature, plus a floor for directions no
        # term sees (a straight arm's twist), which then stay where they are.
        hessian[:, diagonal_index, diagonal_index] *= (1.0 + damping)[:, None]
        hessian[:, diagonal_index, diagonal_index] += 1.0
        step = np.linalg.solve(hessian, -gradient[..., None])[..., 0]
        trial = apply_update(pose, step, exp_map)
        trial_joints, trial_frames = forward_kinematics(trial, offsets)
        trial_angles = limit_angles(trial.local[:, DRIVEN])
        trial_energy = _energy(trial, trial_joints, data, w, trial_angles, terms)
        better = trial_energy <= current
        if better.all():  # the usual case: take the trial whole
            pose, joints, frames, angles = trial, trial_joints, trial_frames, trial_angles
        elif better.any():
            joints = np.where(better[:, None, None], trial_joints, joints)  # reused next step
            frames = np.where(better[:, None, None, None], trial_frames, frames)
            angles = np.where(better[:, None, None], trial_angles, angles)
            pose = Pose(np.where(better[:, None], trial.root, pose.root),
                        np.where(better[:, None, None], trial.root_rotation, pose.root_rotation),
                        np.where(better[:, None, None, None], trial.local, pose.local))  # fmt: skip
        current = np.where(better, trial_energy, current)
        damping = np.clip(np.where(better, damping * 0.3, damping * 10.0), 1e-6, 1e6)
    return (pose, joints, frames) if return_joints else pose
