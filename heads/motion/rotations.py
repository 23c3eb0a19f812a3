"""Rotation helpers for the skeleton fitter and the BVH writer, vectorised over leading axes.

Conventions: rotation matrices act on column vectors (v' = R v); angles are radians unless a name
says degrees. Euler angles are in BVH's "Zrotation Xrotation Yrotation" order, which means
R = Rz(z) Rx(x) Ry(y) (the channel listed first is the outermost factor).
"""

from __future__ import annotations

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices: skew(a) @ b = a x b."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


# v @ _SKEW_BASIS = skew(v) flattened row-major: one product instead of six assignments
_SKEW_BASIS = np.array([[0, 0, 0, 0, 0, -1, 0, 1, 0],
                        [0, 0, 1, 0, 0, 0, -1, 0, 0],
                        [0, -1, 0, 1, 0, 0, 0, 0, 0]], float)  # fmt: skip


_EYE3 = np.eye(3)


def exp_map(v: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (axis x angle) -> (..., 3, 3) matrices (Rodrigues):
    I + sin(t)/t K + (1 - cos t)/t^2 K^2, the second factor written 2 sin^2(t/2)/t^2 (no
    cancellation at small angles). A zero vector gives exactly the identity."""
    angle = np.sqrt((v * v).sum(-1))[..., None, None]
    small = angle < 1e-8
    safe = np.where(small, 1.0, angle)
    k = (v @ _SKEW_BASIS).reshape(v.shape[:-1] + (3, 3))
    half = np.sin(0.5 * safe) / safe
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, 2.0 * half * half)
    return _EYE3 + a * k + b * (k @ k)


def vee(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3): the axis part (R - R^T)/2 as a vector, 2 sin(angle) x axis / 2."""
    return 0.5 * np.stack(
        [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]],
        -1,
    )


def log_map(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) rotation vectors with angles in [0, pi) (near pi the axis is only
    approximate; the fitter uses it for small frame-to-frame differences)."""
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)[..., None]
    sin = np.sin(angle)
    scale = np.where(sin > 1e-8, angle / np.where(sin > 1e-8, sin, 1.0), 1.0)
    return vee(r) * scale


def align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest rotation taking direction a (..., 3) onto direction b (..., 3) (any lengths
    > 0). For opposite directions, a half turn about an axis perpendicular to a."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = (a * b).sum(-1, keepdims=True)
    helper = np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    fallback = np.cross(a, helper)
    fallback /= np.linalg.norm(fallback, axis=-1, keepdims=True)
    axis = np.where(sin > 1e-9, axis / np.maximum(sin, 1e-12), fallback)
    return exp_map(axis * np.arctan2(sin, cos))


def kabsch(rest: np.ndarray, seen: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The rotation R minimising sum_i w_i |R rest_i - seen_i|^2 (Wahba's problem).

    rest, seen: (N, 3) vectors; weights: (N,). Falls back to `align` of the heaviest pair when
    the vectors span less than a plane, and to the identity without any usable pair."""
    usable = (weights > 0) & np.isfinite(seen).all(1)
    usable &= np.linalg.norm(np.nan_to_num(seen), axis=1) > 1e-9  # a zero vector has no direction
    if not usable.any():
        return np.eye(3)
    rest, seen, w = rest[usable], seen[usable], weights[usable]
    u, s, vt = np.linalg.svd((seen * w[:, None]).T @ rest)
    if len(rest) < 2 or s[1] < 1e-6 * max(s[0], 1e-12):
        best = int(np.argmax(w))
        return align(rest[best], seen[best])
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def euler_zxy(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) angles (z, x, y) with R = Rz(z) Rx(x) Ry(y), x in [-pi/2, pi/2]."""
    x = np.arcsin(np.clip(r[..., 2, 1], -1.0, 1.0))
    y = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    z = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    return np.stack([z, x, y], -1)


def from_euler_zxy(angles: np.ndarray) -> np.ndarray:
    """(..., 3) angles (z, x, y) -> (..., 3, 3) R = Rz(z) Rx(x) Ry(y)."""
    z, x, y = angles[..., 0], angles[..., 1], angles[..., 2]
    one, zero = np.ones_like(z), np.zeros_like(z)
    rz = np.stack([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], -1)
    rx = np.stack([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], -1)
    ry = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], -1)
    shape = angles.shape[:-1] + (3, 3)
    return rz.reshape(shape) @ rx.reshape(shape) @ ry.reshape(shape)


def continuous_euler_zxy(r: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Euler angles (z, x, y) of (..., 3, 3) closest to `previous` (..., 3), so a sequence has no
    +-180 degree jumps: of the two equivalent triples (z, x, y) and (z + pi, pi - x, y + pi),
    each shifted by whole turns towards the previous angles, the nearer one. Angles then leave
    [-pi, pi] as a motion keeps turning, which BVH readers accept."""
    first = euler_zxy(r)
    if previous is None:
        return first
    second = first + np.array([np.pi, 0.0, np.pi])
    second[..., 1] = np.pi - first[..., 1]
    candidates = np.stack([first, second])  # (2, ..., 3)
    turns = np.round((previous - candidates) / (2 * np.pi))
    candidates = candidates + 2 * np.pi * turns
    distance = np.abs(candidates - previous).sum(-1)  # (2, ...)
    pick = (distance[1] < distance[0])[..., None]
    return np.where(pick, candidates[1], candidates[0])
