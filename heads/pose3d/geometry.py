"""Pure 3D geometry: pinhole projection, default intrinsics, absolute placement, Procrustes.

Camera convention (as the synthetic set and MuCo/MuPoTS): x right, y down, z forward, millimetres;
pixels u = fx * X / Z + cx, v = fy * Y / Z + cy with pixel centres at integer coordinates.
"""

from __future__ import annotations

import numpy as np


def default_intrinsics(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(f (2,), c (2,)) for an unknown camera: focal length = image width (a ~53 degree
    horizontal field of view, typical of webcams and phones), principal point at the centre."""
    return (
        np.array([width, width], np.float64),
        np.array([(width - 1) / 2, (height - 1) / 2], np.float64),
    )


def project(points: np.ndarray, f, c) -> np.ndarray:
    """(..., 3) camera mm -> (..., 2) pixels."""
    points = np.asarray(points, np.float64)
    f, c = np.broadcast_to(f, (2,)), np.asarray(c, np.float64)
    return points[..., :2] / points[..., 2:3] * f + c


def fit_translation(
    pose: np.ndarray, points2d: np.ndarray, f, c, weights: np.ndarray | None = None
) -> np.ndarray:
    """The translation T (3,) (mm; T[2] is the root depth) placing a root-relative pose so that
    it projects onto its 2D joints, by linear least squares.

    pose: (J, 3) root-relative mm; points2d: (J, 2) pixels; f, c: intrinsics (scalars or (2,));
    weights: (J,) confidences (0 drops a joint). Each joint gives two equations linear in T:
        fx (X + Tx) - (u - cx) (Z + Tz) = 0  and  fy (Y + Ty) - (v - cy) (Z + Tz) = 0,
    exact for a perfect pose (no weak-perspective approximation). Needs >= 2 weighted joints.
    """
    pose = np.asarray(pose, np.float64)
    points2d = np.asarray(points2d, np.float64)
    f = np.broadcast_to(np.asarray(f, np.float64), (2,))
    c = np.broadcast_to(np.asarray(c, np.float64), (2,))
    weights = np.ones(len(pose)) if weights is None else np.asarray(weights, np.float64)
    usable = (weights > 0) & np.isfinite(pose).all(1) & np.isfinite(points2d).all(1)
    if usable.sum() < 2:
        raise ValueError(f"fit_translation: need >= 2 usable joints, got {int(usable.sum())}")
    pose, points2d, w = pose[usable], points2d[usable], np.sqrt(weights[usable])
    centred = points2d - c  # (J, 2)
    rows, rhs = [], []
    for axis in (0, 1):
        a = np.zeros((len(pose), 3))
        a[:, axis] = f[axis]
        a[:, 2] = -centred[:, axis]
        rows.append(a * w[:, None])
        rhs.append((centred[:, axis] * pose[:, 2] - f[axis] * pose[:, axis]) * w)
    solution, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
    return solution


def place_people(
    poses: np.ndarray,
    points2d: np.ndarray,
    f=None,
    c=None,
    image_size: tuple[int, int] | None = None,
    min_joints: int = 2,
) -> np.ndarray:
    """(P, J, 3) root-relative poses + (P, J, 3) 2D (x, y, score) -> (P, J, 3) absolute camera
    mm; people with fewer than `min_joints` usable joints get NaN. Without f/c the intrinsics
    default from image_size (W, H) (`default_intrinsics`)."""
    if f is None or c is None:
        if image_size is None:
            raise ValueError("place_people: give the intrinsics (f, c) or the image size")
        f, c = default_intrinsics(*image_size)
    poses = np.asarray(poses, np.float64)
    out = np.full(poses.shape, np.nan)
    for p, (pose, points) in enumerate(zip(poses, np.asarray(points2d, np.float64))):
        weights = points[:, 2] * np.isfinite(pose).all(1)
        if (weights > 0).sum() >= max(min_joints, 2):
            out[p] = pose + fit_translation(pose, points[:, :2], f, c, weights)
    return out


def procrustes_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(J, 3) pred aligned to (J, 3) target by the similarity (scale, rotation, translation)
    minimising the squared error (Umeyama; reflections excluded)."""
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    mu_p, mu_t = pred.mean(0), target.mean(0)
    p, t = pred - mu_p, target - mu_t
    u, s, vt = np.linalg.svd(p.T @ t)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    d = np.array([1.0, 1.0, sign])
    rotation = (u * d) @ vt  # maps row vectors: p @ rotation
    variance = (p**2).sum()
    scale = (s * d).sum() / variance if variance > 0 else 1.0
    return scale * p @ rotation + mu_t
