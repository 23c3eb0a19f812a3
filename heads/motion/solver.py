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
  worst-determined coordinate of a monocular estimate).
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
from .limits import limit_angles, limit_excess, limit_residuals
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
    iterations: int = 3
    first_iterations: int = 12
    damping: float = 1e-3


@dataclass
class FrameInputs:
    """One frame's inputs for P people: joints3d (P, 21, 3) camera mm and conf3d (P, 21) (0 =
    missing); points2d (P, 21, 2) pixels and conf2d (P, 21); f, c (2,) intrinsics; predicted
    (P, 21, 3) joints the smoothness term pulls towards and has_prediction (P,) weights (0 on a
    track's first frame); depth_prev (P,) last root depth (NaN: none)."""

    joints3d: np.ndarray
    conf3d: np.ndarray
    points2d: np.ndarray
    conf2d: np.ndarray
    f: np.ndarray
    c: np.ndarray
    predicted: np.ndarray
    has_prediction: np.ndarray
    depth_prev: np.ndarray


def _data_terms(joints, jac, data: FrameInputs, w: FitWeights):
    """Normal equations (H (P, n, n), g (P, n)) of the 3D, smoothness and 2D terms."""
    count = len(joints)
    a = (w.w3d * data.conf3d) ** 2 + (w.w_smooth**2) * data.has_prediction[:, None]  # (P, 21)
    b = (w.w3d * data.conf3d)[..., None] ** 2 * (joints - data.joints3d)
    b += (w.w_smooth**2) * data.has_prediction[:, None, None] * (joints - data.predicted)
    flat = jac.reshape(count, NUM_JOINTS * 3, NUM_PARAMS)
    weights = np.repeat(a, 3, axis=1)  # (P, 63)
    weighted = np.swapaxes(flat * weights[..., None], 1, 2)  # (P, n, 63)
    hessian = weighted @ flat
    gradient = (np.swapaxes(flat, 1, 2) @ b.reshape(count, -1, 1))[..., 0]
    if not data.conf2d.any():
        return hessian, gradient
    depth = np.maximum(joints[..., 2], 1.0)  # (P, 21)
    pixels = data.f * joints[..., :2] / depth[..., None] + data.c
    residual = (pixels - data.points2d) * depth[..., None] / data.f  # mm at the joint's depth
    # d residual / d x with the depth scale held fixed: [[1, 0, -x/z], [0, 1, -y/z]]
    dproj = np.zeros((count, NUM_JOINTS, 2, 3))
    dproj[..., 0, 0] = dproj[..., 1, 1] = 1.0
    dproj[..., :, 2] = -joints[..., :2] / depth[..., None]
    jac2 = (dproj @ jac).reshape(count, NUM_JOINTS * 2, NUM_PARAMS)
    weights2 = np.repeat((w.w2d * data.conf2d) ** 2, 2, axis=1)
    weighted = np.swapaxes(jac2 * weights2[..., None], 1, 2)  # (P, n, 42)
    hessian += weighted @ jac2
    gradient += (weighted @ residual.reshape(count, -1, 1))[..., 0]
    return hessian, gradient


def _prior_terms(pose: Pose, hessian, gradient, data: FrameInputs, w: FitWeights) -> None:
    """Add the joint-limit and root-depth terms to the normal equations (in place)."""
    excess, jac = limit_residuals(pose.local[:, DRIVEN])  # (P, D, 3), (P, D, 3, 3)
    scale = w.w_limits**2
    blocks = scale * np.einsum("pdai,pdaj->pdij", jac, jac)
    hessian[:, _LIMIT_INDEX[:, :, None], _LIMIT_INDEX[:, None, :]] += blocks
    gradient[:, _LIMIT_INDEX] += scale * np.einsum("pdai,pda->pdi", jac, excess)
    has_depth = np.isfinite(data.depth_prev)
    hessian[:, 2, 2] += np.where(has_depth, w.w_depth**2, 0.0)
    gradient[:, 2] += np.where(has_depth, w.w_depth**2 * (pose.root[:, 2] - data.depth_prev), 0.0)


def energy(pose: Pose, offsets: np.ndarray, data: FrameInputs, w: FitWeights) -> np.ndarray:
    """(P,) the energy of a pose: the sum of all squared weighted residuals (module docstring)."""
    return _energy(pose, forward_kinematics(pose, offsets)[0], data, w)


def _energy(pose: Pose, joints: np.ndarray, data: FrameInputs, w: FitWeights) -> np.ndarray:
    e = ((w.w3d * data.conf3d) ** 2 * ((joints - data.joints3d) ** 2).sum(-1)).sum(-1)
    e += (w.w_smooth**2 * data.has_prediction) * ((joints - data.predicted) ** 2).sum((1, 2))
    depth = np.maximum(joints[..., 2], 1.0)
    pixels = data.f * joints[..., :2] / depth[..., None] + data.c
    residual = (pixels - data.points2d) * depth[..., None] / data.f
    e += ((w.w2d * data.conf2d) ** 2 * (residual**2).sum(-1)).sum(-1)
    e += w.w_limits**2 * (limit_excess(limit_angles(pose.local[:, DRIVEN])) ** 2).sum((1, 2))
    change = np.nan_to_num(pose.root[:, 2] - data.depth_prev)  # no previous depth: no term
    return e + w.w_depth**2 * change**2


def solve_frame(
    pose: Pose, offsets: np.ndarray, data: FrameInputs, w: FitWeights, iterations: int
) -> Pose:
    """`iterations` Levenberg-Marquardt steps from `pose` (P people) -> the fitted Pose.

    Each person's damping adapts: a step that raises their energy is undone and their damping
    grows tenfold, an accepted one shrinks it, so a start far from the answer (a new track, a
    pose far outside the limits) cannot throw the fit off."""
    eye = np.eye(NUM_PARAMS)
    damping = np.full(len(pose.root), w.damping)
    joints, frames = forward_kinematics(pose, offsets)
    current = _energy(pose, joints, data, w)
    for _ in range(iterations):
        jac = position_jacobian(joints, frames)
        hessian, gradient = _data_terms(joints, jac, data, w)
        _prior_terms(pose, hessian, gradient, data, w)
        diagonal = np.diagonal(hessian, axis1=1, axis2=2)
        # Marquardt: damp each parameter by its own curvature, plus a floor for directions no
        # term sees (a straight arm's twist), which then stay where they are.
        hessian = hessian + (damping[:, None] * diagonal + 1.0)[:, :, None] * eye
        step = np.linalg.solve(hessian, -gradient[..., None])[..., 0]
        trial = apply_update(pose, step, exp_map)
        trial_joints, trial_frames = forward_kinematics(trial, offsets)
        trial_energy = _energy(trial, trial_joints, data, w)
        better = trial_energy <= current
        joints = np.where(better[:, None, None], trial_joints, joints)  # reused next step
        frames = np.where(better[:, None, None, None], trial_frames, frames)
        pose = Pose(np.where(better[:, None], trial.root, pose.root),
                    np.where(better[:, None, None], trial.root_rotation, pose.root_rotation),
                    np.where(better[:, None, None, None], trial.local, pose.local))  # fmt: skip
        current = np.where(better, trial_energy, current)
        damping = np.clip(np.where(better, damping * 0.3, damping * 10.0), 1e-6, 1e6)
    return pose
