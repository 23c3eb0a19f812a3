"""One frame's skeleton fit for a batch of people: damped Gauss-Newton on XNect Stage III's energy.

Energy per person (every residual in millimetres, or radians for the limits):
- 3D: w3d * c_j * (x_j - X_j) for the input 3D joints X_j with confidence c_j (0 = missing);
- 2D: w2d * s_j * (pi(x_j) - u_j) * z_j / f: the reprojection error in pixels scaled to mm at
  the joint's depth, so that one weight scale serves both terms (s_j = the 2D score). With
  pi(x) = f (x, y) / z + c this is (x, y) - z (u_j - c) / f, the joint's offset from its
  camera ray: linear in the joint, so its Jacobian is exact;
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
Each step's model includes the limits of the angles outside their ranges, and of those the
step would carry across a bound (`_respect_limits`); with the damping's floor (`_FLOOR`), two
steps a frame reach within a few percent of the converged energy (tests/test_motion_solver.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dposv as _posv

from .kinematics import (
    DRIVEN,
    NUM_JOINTS,
    NUM_PARAMS,
    Pose,
    apply_update,
    forward_kinematics,
    position_jacobian,
)
from .limits import RANGES, angle_jacobian, limit_angles, limit_excess
from .rotations import exp_map

# The damping's floor per parameter, added to the Hessian's diagonal: 1 per mm^2 for the root's
# position; 1e4 per rad^2 for rotations, the curvature of a joint 100 mm from the turning
# axis. Directions no term sees (a straight arm's twist) then stay where they are, and a
# barely-seen one cannot take a step of a radian or more on noise, which the joint limits'
# linear model cannot follow (such steps raised the energy and were thrown away). The floor
# changes how far a step goes, not where the solve converges.
_FLOOR = np.concatenate([np.full(3, 1.0), np.full(NUM_PARAMS - 3, 1e4)])
# Flat indices (D x 9) of each driven bone's 3 x 3 block on the diagonal of an n x n Hessian.
_PARAM_IDS = 6 + 3 * np.arange(len(DRIVEN))[:, None] + np.arange(3)  # (D, 3) parameter ids
_LIMIT_BLOCKS = (_PARAM_IDS[:, :, None] * NUM_PARAMS + _PARAM_IDS[:, None, :]).reshape(-1)


@dataclass
class FitWeights:
    """Weights of the energy terms (see the module docstring for units) and the solver's steps.

    XNect's release weights (3D 0.85, 2D 25e-6, smoothness 1e-5, limits 1, depth 6e-10) are in
    its own units; these are ours, chosen on the synthetic sequences (docs/motion.md)."""

    w3d: float = 1.0
    w2d: float = 1.0
    w_smooth: float = 1.5
    w_limits: float = 2000.0
    w_depth: float = 0.5
    w_contact: float = 5.0
    contact_speed: float = 35.0  # mm/frame: a fitted foot slower than this stands (1 m/s at 30 fps)
    contact_release: float = 1.5  # x the input jitter (mm): this far from the pin halves it
    iterations: int = 2
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
    """A frame's per-person constants of the energy, computed once per solve.

    The 3D, smoothness and contact terms fold into one weight a (P, 21) and target (P, 21, 3):
    their energy is sum_j a_j |x_j|^2 - 2 target_j . x_j + constant, and b = a x - target is
    their gradient per joint. rows (P, R, 1) weighs the rows of the stacked Jacobian (63 rows of
    3D joints, then 42 of 2D points where any 2D point counts)."""

    def __init__(self, data: FrameInputs, w: FitWeights) -> None:
        w3 = (w.w3d * data.conf3d) ** 2  # (P, 21)
        ws = (w.w_smooth**2) * data.has_prediction[:, None]  # (P, 1)
        self.a = w3 + ws  # (P, 21)
        self.target = w3[..., None] * data.joints3d + ws[..., None] * data.predicted
        constant = w3 * (data.joints3d**2).sum(-1) + ws * (data.predicted**2).sum(-1)
        if data.contact is not None and data.contact.any():  # one more pull per joint: folded in
            wc = (w.w_contact**2) * data.contact  # (P, 21)
            self.a = self.a + wc
            self.target = self.target + wc[..., None] * data.anchor
            constant = constant + wc * (data.anchor**2).sum(-1)
        self.constant = constant.sum(-1)  # (P,)
        self.w2 = (w.w2d * data.conf2d) ** 2  # (P, 21)
        self.has2d = bool(data.conf2d.any())
        self.ray = (data.points2d - data.c) / data.f  # (P, 21, 2): (x, y) / z along the ray
        rows = [np.repeat(self.a, 3, axis=1)] + [np.repeat(self.w2, 2, axis=1)] * self.has2d
        self.rows = np.concatenate(rows, 1)[..., None]  # (P, 63 [+ 42], 1)
        has_depth = np.isfinite(data.depth_prev)
        self.depth_weight = np.where(has_depth, w.w_depth**2, 0.0)
        self.depth_prev = np.where(has_depth, data.depth_prev, 0.0)
        self.limit_weight = w.w_limits**2


@dataclass
class _Point:
    """A pose and what the solver evaluates at it: joints and bone frames (forward kinematics),
    limit angles and excess, the 3D terms' gradient b (P, 21, 3), the 2D residual (P, 21, 2)
    (mm off the camera ray; None without 2D points) and the energy (P,)."""

    pose: Pose
    joints: np.ndarray
    frames: np.ndarray
    angles: np.ndarray
    excess: np.ndarray
    b: np.ndarray
    residual2d: np.ndarray | None
    energy: np.ndarray


def _evaluate(pose: Pose, offsets: np.ndarray, terms: _Terms) -> _Point:
    """Everything the energy and its normal equations need at `pose`, computed once: a trial
    step's evaluation is also the next step's starting point when the step is taken."""
    joints, frames = forward_kinematics(pose, offsets)
    b = terms.a[..., None] * joints - terms.target  # (P, 21, 3)
    e = (joints * (b - terms.target)).sum((1, 2)) + terms.constant  # a|x|^2 - 2 t.x + c
    residual = None
    if terms.has2d:
        residual = joints[..., :2] - joints[..., 2:] * terms.ray  # (P, 21, 2)
        e += (terms.w2 * (residual**2).sum(-1)).sum(-1)
    angles = limit_angles(pose.local[:, DRIVEN])
    excess = limit_excess(angles)
    e += terms.limit_weight * (excess**2).sum((1, 2))
    e += terms.depth_weight * (pose.root[:, 2] - terms.depth_prev) ** 2
    return _Point(pose, joints, frames, angles, excess, b, residual, e)


def _normal_equations(point: _Point, terms: _Terms):
    """(H (P, n, n), g (P, n)): Gauss-Newton's J^T W J and J^T W r of every term at `point`."""
    count = len(point.joints)
    jac = position_jacobian(point.joints, point.frames)  # (P, 21, 3, n)
    rows = jac.reshape(count, NUM_JOINTS * 3, NUM_PARAMS)
    rhs = point.b.reshape(count, -1)
    if terms.has2d:
        jac2 = jac[:, :, :2] - terms.ray[..., None] * jac[:, :, 2:3]  # d residual = [I, -ray]
        rows = np.concatenate([rows, jac2.reshape(count, -1, NUM_PARAMS)], 1)
        rhs = np.concatenate([rhs, (terms.w2[..., None] * point.residual2d).reshape(count, -1)], 1)
    # the 3D rows of rhs carry their weights already (b = a x - target): J^T rhs is the gradient
    hessian = np.swapaxes(rows * terms.rows, 1, 2) @ rows
    gradient = (rhs[:, None] @ rows)[:, 0]
    angle_jac = angle_jacobian(point.pose.local[:, DRIVEN], point.angles)  # (P, D, 3, 3)
    active = point.excess != 0  # limits: a 3 x 3 block per driven bone outside a range
    if active.any():
        _add_limit_rows(hessian, gradient, angle_jac * active[..., None], point.excess, terms)
    hessian[:, 2, 2] += terms.depth_weight
    gradient[:, 2] += terms.depth_weight * (point.pose.root[:, 2] - terms.depth_prev)
    return hessian, gradient, angle_jac


def _add_limit_rows(hessian, gradient, jac, residual, terms: _Terms) -> None:
    """Add limit rows (jac (P, D, 3, 3 axes) per bone angle, residual (P, D, 3)) to the normal
    equations (in place): each bone's rows touch only its own 3 x 3 block."""
    count = len(hessian)
    jac_t = np.swapaxes(jac, -1, -2)
    blocks = terms.limit_weight * (jac_t @ jac)
    hessian.reshape(count, -1)[:, _LIMIT_BLOCKS] += blocks.reshape(count, -1)
    gradient[:, 6:] += terms.limit_weight * (jac_t @ residual[..., None]).reshape(count, -1)


def _respect_limits(step, hessian, gradient, point: _Point, angle_jac, terms: _Terms):
    """The step again, if it would carry an angle that is inside its range now across a bound:
    the model then also holds that angle at the bound (an active set of one round). Without
    it, the stiff limits are invisible to the model until a step has crossed them, and such a
    step raises the energy and is thrown away (a wasted iteration)."""
    count = len(step)
    predicted = point.angles + (angle_jac @ step[:, 6:].reshape(count, -1, 3, 1))[..., 0]
    above, below = predicted > RANGES[..., 1], predicted < RANGES[..., 0]
    crossing = (point.excess == 0) & (above | below)
    if not crossing.any():
        return step
    bound = np.where(above, RANGES[..., 1], RANGES[..., 0])
    residual = np.where(crossing, point.angles - bound, 0.0)
    _add_limit_rows(hessian, gradient, angle_jac * crossing[..., None], residual, terms)
    return _solve(hessian, gradient)


def energy(pose: Pose, offsets: np.ndarray, data: FrameInputs, w: FitWeights) -> np.ndarray:
    """(P,) the energy of a pose: the sum of all squared weighted residuals (module docstring)."""
    return _evaluate(pose, offsets, _Terms(data, w)).energy


def normal_equations(pose: Pose, offsets: np.ndarray, data: FrameInputs, w: FitWeights):
    """(H (P, n, n), g (P, n)) of the energy at `pose`: g is half the energy's gradient and H
    its Gauss-Newton curvature, per unit of the update `kinematics.apply_update` applies."""
    terms = _Terms(data, w)
    return _normal_equations(_evaluate(pose, offsets, terms), terms)[:2]


def _solve(hessian: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """(P, n) steps -H^-1 g. H is positive definite (the damping's floor sees to it): LAPACK's
    Cholesky solve per person costs half of numpy's batched LU at this size."""
    steps = np.empty_like(gradient)
    for person in range(len(gradient)):
        _, step, info = _posv(hessian[person], gradient[person], lower=False)
        if info != 0:  # not positive definite after all: least squares
            step = np.linalg.lstsq(hessian[person], gradient[person])[0]
        steps[person] = -step
    return steps


def _blend(better: np.ndarray, trial: _Point, point: _Point) -> _Point:
    """Per person, the trial where it lowered the energy, else the point it started from."""
    fields = {}
    for name in _Point.__dataclass_fields__:
        new, old = getattr(trial, name), getattr(point, name)
        fields[name] = None if new is None else _pick(better, new, old)
    return _Point(**fields)


def _pick(better: np.ndarray, new, old):
    """np.where over the leading (people) axis, for arrays and Poses."""
    if isinstance(new, Pose):
        names = ("root", "root_rotation", "local")
        return Pose(*(_pick(better, getattr(new, k), getattr(old, k)) for k in names))
    return np.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


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
    damping = np.full(len(pose.root), w.damping)
    point = _evaluate(pose, offsets, terms)
    for _ in range(iterations):
        hessian, gradient, angle_jac = _normal_equations(point, terms)
        # Marquardt: damp each parameter by its own curvature, plus a floor (_FLOOR)
        diagonal = hessian.reshape(len(hessian), -1)[:, :: NUM_PARAMS + 1]
        diagonal *= (1.0 + damping)[:, None]
        diagonal += _FLOOR
        step = _solve(hessian, gradient)
        step = _respect_limits(step, hessian, gradient, point, angle_jac, terms)
        trial_pose = apply_update(point.pose, step, exp_map)
        trial = _evaluate(trial_pose, offsets, terms)
        better = trial.energy <= point.energy
        if better.all():  # the usual case: take the trial whole
            point = trial
        elif better.any():
            point = _blend(better, trial, point)
        damping = np.clip(np.where(better, damping * 0.3, damping * 10.0), 1e-6, 1e6)
    return (point.pose, point.joints, point.frames) if return_joints else point.pose
