"""The 21-joint kinematic skeleton: tree, rest T-pose, forward kinematics and its Jacobian.

Tree: `skeletons.JOINTS21_PARENTS` (root = pelvis). Body frame of the rest pose (mm): x = the
person's left, y = up, z = forward (right-handed), so a T-pose facing +z has its head at +y and
its left hand at +x; limbs point along +-x (arms, shoulder and hip girdles), -y (legs), +y
(spine, neck, head) and +z (feet).

Model (what a pose is): root position t and root rotation G; every joint j other than the root
has a bone frame F_j (the frame of the bone parent(j) -> j) and sits at
    x_j = x_parent + F_j o_j,     F_j = F_parent L_j  (F_root = G),
with o_j its rest offset (length x T-pose direction) and L_j its local rotation. The girdle
bones (neck -> shoulders, pelvis -> hips) are rigid (L_j = I): they move with the chest and the
pelvis, as a collar bone and a pelvis do. So the root's rotation is the pelvis's, the spine bends
and twists on its own, the head moves independently of the shoulders, and a bone's rotation is
also the frame its children hang from (the upper arm's twist decides where the elbow bends).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..skeletons import JOINTS21_FLIP, JOINTS21_NAMES, JOINTS21_PARENTS, JOINTS21_ROOT

NUM_JOINTS = len(JOINTS21_NAMES)
PARENTS = np.array(JOINTS21_PARENTS)
ROOT = JOINTS21_ROOT
GIRDLE_PARTS = ("shoulder", "hip")  # rigid bones: collar bones and the pelvis


def split_name(name: str) -> tuple[float, str]:
    """'left_knee' -> (+1, 'knee'), 'right_hand' -> (-1, 'hand'), 'spine' -> (0, 'spine')."""
    for prefix, sign in (("left_", 1.0), ("right_", -1.0)):
        if name.startswith(prefix):
            return sign, name[len(prefix) :]
    return 0.0, name


def rest_direction(name: str) -> np.ndarray:
    """T-pose direction (3,) of the bone that ends at joint `name`, in its parent's frame."""
    side, part = split_name(name)
    if part in ("shoulder", "elbow", "wrist", "hand", "hip"):
        return np.array([side, 0.0, 0.0])
    if part in ("knee", "ankle"):
        return np.array([0.0, -1.0, 0.0])
    if part == "foot":
        return np.array([0.0, 0.0, 1.0])
    return np.array([0.0, 1.0, 0.0])  # spine, neck, head, head top


def _depth(joint: int) -> int:
    return 0 if PARENTS[joint] < 0 else 1 + _depth(int(PARENTS[joint]))


REST_DIRECTIONS = np.stack([rest_direction(n) for n in JOINTS21_NAMES])  # (21, 3)
RIGID = np.array([split_name(n)[1] in GIRDLE_PARTS for n in JOINTS21_NAMES])  # (21,)
DEPTHS = np.array([_depth(j) for j in range(NUM_JOINTS)])
# Joints grouped by depth: forward kinematics runs one vectorised step per level.
LEVELS: tuple[np.ndarray, ...] = tuple(
    np.flatnonzero(d == DEPTHS) for d in range(1, int(DEPTHS.max()) + 1)
)
# The bones with a rotation of their own, in tree order (parents before children).
DRIVEN = np.concatenate([level[~RIGID[level]] for level in LEVELS])
NUM_PARAMS = 6 + 3 * len(DRIVEN)  # root position, root rotation, 3 per driven bone


def subtree_mask() -> np.ndarray:
    """(21, 21) bool: mask[a, k] = k is a or one of its descendants."""
    mask = np.eye(NUM_JOINTS, dtype=bool)
    for joint in np.argsort(DEPTHS)[::-1]:  # children before parents
        parent = PARENTS[joint]
        if parent >= 0:
            mask[parent] |= mask[joint]
    return mask


SUBTREE = subtree_mask()
MIRROR = np.array(JOINTS21_FLIP)
# Precomputed tables of forward kinematics and its Jacobian (computed once, used every step).
# Forward kinematics composes each joint's transform with its ancestors' by pointer doubling:
# round r multiplies every joint's product so far by that of its 2^r-th ancestor (index
# NUM_JOINTS: an identity beyond the root), so the whole tree takes log2(depth) batched products
# instead of one per level.
_BEYOND = NUM_JOINTS
_ANCESTORS: tuple[np.ndarray, ...] = ()
_ancestor = np.append(np.where(PARENTS < 0, _BEYOND, PARENTS), _BEYOND)
while (_ancestor[:NUM_JOINTS] != _BEYOND).any():
    _ANCESTORS += (_ancestor,)
    _ancestor = _ancestor[_ancestor]
_HOMOGENEOUS_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_EYE3, _EYE4 = np.eye(3), np.eye(4)
_TURNING = np.concatenate([[ROOT], DRIVEN])  # (B,) the bones whose frame a rotation turns
_PIVOTS = np.concatenate([[ROOT], PARENTS[DRIVEN]])  # (B,) where each rotation turns
_TURN_MASK = np.concatenate([np.ones((1, NUM_JOINTS), bool), SUBTREE[DRIVEN]]).T[:, None, :, None]
# (9, 3): _EPSILON @ v = the 3 x 3 matrix M (row-major) with M w = w x v (Levi-Civita)
_EPSILON = np.array([[[0, 0, 0], [0, 0, 1], [0, -1, 0]],
                     [[0, 0, -1], [0, 0, 0], [1, 0, 0]],
                     [[0, 1, 0], [-1, 0, 0], [0, 0, 0]]], float).reshape(9, 3)  # fmt: skip


@dataclass
class Pose:
    """A batch of P skeleton poses in camera space: root (P, 3) mm, root_rotation (P, 3, 3) body
    -> camera, local (P, 21, 3, 3) local rotations (identity for the root and rigid bones)."""

    root: np.ndarray
    root_rotation: np.ndarray
    local: np.ndarray

    @classmethod
    def rest(cls, count: int) -> Pose:
        root_rotation, local = np.empty((count, 3, 3)), np.empty((count, NUM_JOINTS, 3, 3))
        root_rotation[:], local[:] = _EYE3, _EYE3
        return cls(np.zeros((count, 3)), root_rotation, local)

    def take(self, index) -> Pose:
        return Pose(self.root[index], self.root_rotation[index], self.local[index])

    def copy(self) -> Pose:
        return Pose(self.root.copy(), self.root_rotation.copy(), self.local.copy())


def forward_kinematics(pose: Pose, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pose (P people), offsets (P, 21, 3) rest offsets -> (joints (P, 21, 3) mm, frames
    (P, 21, 3, 3)): frames[:, j] is F_j, the frame of the bone ending at j (G at the root)."""
    # Homogeneous 4 x 4 transforms [[F_j, x_j], [0, 1]] = parent's @ [[L_j, L_j o_j], [0, 1]]
    # (the root's: [[G, t], [0, 1]]), composed up the tree by pointer doubling (_ANCESTORS).
    count = len(pose.root)
    world = np.empty((count, NUM_JOINTS + 1, 4, 4))
    world[:, :NUM_JOINTS, :3, :3] = pose.local
    world[:, :NUM_JOINTS, :3, 3] = (pose.local @ offsets[..., None])[..., 0]
    world[:, :, 3] = _HOMOGENEOUS_ROW
    world[:, ROOT, :3, :3] = pose.root_rotation
    world[:, ROOT, :3, 3] = pose.root
    world[:, _BEYOND] = _EYE4
    for ancestors in _ANCESTORS:
        world = world[:, ancestors] @ world
    return world[:, :NUM_JOINTS, :3, 3], world[:, :NUM_JOINTS, :3, :3]


def position_jacobian(joints: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(P, 21, 3) joints and (P, 21, 3, 3) frames of a pose -> (P, 21, 3, NUM_PARAMS): the change
    of every joint per unit of each parameter, for the update root += d[0:3],
    G <- G exp(d[3:6]), L_j <- L_j exp(d[...]) per driven bone j (radians). Turning bone j's frame
    by a small angle about its own axis a (world direction F_j a) moves each joint k of j's
    subtree by (F_j a) x (x_k - x_parent(j))."""
    count = len(joints)
    # (F_b e_a) x (x_k - p_b) = -[x_k]x F_b e_a + [p_b]x F_b e_a, [v]x the cross-product matrix
    cross = (_EPSILON @ joints[..., None]).reshape(count, NUM_JOINTS, 3, 3)  # M c = c x x_k
    axes = frames[:, _TURNING]  # (P, B, 3, 3)
    columns = np.swapaxes(axes, 1, 2).reshape(count, 1, 3, 3 * len(_TURNING))  # F_b e_a
    moved = (cross @ columns).reshape(count, NUM_JOINTS, 3, len(_TURNING), 3)
    moved -= np.swapaxes(cross[:, _PIVOTS] @ axes, 1, 2)[:, None]  # the same for the pivots p_b
    moved *= _TURN_MASK  # only the bone's subtree moves
    out = np.empty((count, NUM_JOINTS, 3, NUM_PARAMS))
    out[..., :3] = _EYE3  # the root's translation moves every joint alike
    out[..., 3:] = moved.reshape(count, NUM_JOINTS, 3, NUM_PARAMS - 3)
    return out


def apply_update(pose: Pose, step: np.ndarray, exp_map) -> Pose:
    """The pose moved by step (P, NUM_PARAMS) (layout of `position_jacobian`)."""
    rotations = exp_map(step[:, 3:].reshape(len(step), -1, 3))  # (P, 1 + D, 3, 3)
    local = pose.local.copy()
    local[:, DRIVEN] = local[:, DRIVEN] @ rotations[:, 1:]
    return Pose(pose.root + step[:, :3], pose.root_rotation @ rotations[:, 0], local)


def tpose_offsets(lengths: np.ndarray, girdles: np.ndarray | None = None) -> np.ndarray:
    """Rest offsets (..., 21, 3) from bone lengths (..., 21) (length of the bone ending at each
    joint; the root's is ignored). girdles (..., 21, 3), where given, replace the offsets of the
    rigid bones (a collar bone may point a little down: it is measured, not assumed)."""
    offsets = lengths[..., None] * REST_DIRECTIONS
    offsets[..., ROOT, :] = 0.0
    if girdles is not None:
        offsets[..., RIGID, :] = girdles[..., RIGID, :]
    return offsets
