"""BVH motion files of fitted skeletons, for Blender, MotionBuilder and other animation tools.

Conventions (what Blender's importer expects with its default settings):
- Y up, right-handed: camera space (x right, y down, z forward) maps to BVH by diag(1, -1, -1),
  a half turn about x (a rotation: flipping only y would mirror left and right). A T-pose
  facing the camera then faces +z with its left hand on +x.
- Rest pose: the person's T-pose (`kinematics`) with their frozen bone lengths; the root's
  OFFSET is zero and its position channels are absolute.
- Rotation channels "Zrotation Xrotation Yrotation" on every joint, meaning R = Rz Rx Ry (a
  joint's local rotation; the global one is the parent's times it), in degrees, kept continuous
  from frame to frame (`rotations.continuous_euler_zxy`: no +-180 flips).
- Units: metres by default (`scale` = 0.001 per mm), so Blender shows people life-size.

Hierarchy: the 21 joints in `skeletons.JOINTS21_PARENTS`' tree. The leaves (head top, hands,
feet) are End Sites. Where a joint has a rigid girdle and a free bone (the pelvis: hips and
spine; the neck: shoulders and head), the free bone gets a helper joint at zero offset
("spine_base", "head_base") holding its own rotation: in BVH a joint's rotation moves all its
children alike, and the head must nod without moving the shoulders.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..skeletons import JOINTS21_NAMES
from .kinematics import NUM_JOINTS, PARENTS, RIGID, ROOT, Pose, forward_kinematics
from .rotations import continuous_euler_zxy

CAMERA_TO_YUP = np.diag([1.0, -1.0, -1.0])
CHANNELS = "Zrotation Xrotation Yrotation"
_CHILDREN = [[int(c) for c in np.flatnonzero(j == PARENTS)] for j in range(NUM_JOINTS)]


@dataclass(frozen=True)
class BvhJoint:
    """One BVH joint: name, parent (index in the joint list, -1 for the root), `offset_of` (the
    21-joint index whose rest offset is this joint's OFFSET, -1 for zero), `frame_of` (the
    21-joint index whose bone frame is this joint's global rotation), and `end` (the joint
    index of the End Site below it, -1 if none)."""

    name: str
    parent: int
    offset_of: int
    frame_of: int
    end: int = -1


def bvh_joints() -> list[BvhJoint]:
    """The BVH hierarchy in file order (depth first, parents before children)."""
    joints: list[BvhJoint] = []

    def visit(joint: int, parent: int, offset_of: int) -> None:
        children = _CHILDREN[joint]
        single = len(children) == 1 and not RIGID[children[0]]
        frame_of = children[0] if single else joint  # a lone free bone's frame, else the own one
        leaf_child = single and not _CHILDREN[children[0]]
        end = children[0] if leaf_child else -1
        joints.append(BvhJoint(JOINTS21_NAMES[joint], parent, offset_of, frame_of, end))
        here = len(joints) - 1
        if leaf_child:
            return
        for child in children:
            if single or RIGID[child]:
                visit(child, here, child)
            else:  # a free bone beside rigid ones: a helper joint holds its rotation
                joints.append(BvhJoint(f"{JOINTS21_NAMES[child]}_base", here, -1, child))
                visit(child, len(joints) - 1, child)

    visit(ROOT, -1, -1)
    return joints


BVH_JOINTS = bvh_joints()
ANGLE_NAMES = tuple(joint.name for joint in BVH_JOINTS)  # the joints that carry angles


def local_rotations(frames: np.ndarray) -> np.ndarray:
    """(T, 21, 3, 3) camera-space bone frames (`forward_kinematics`) -> (T, N, 3, 3) the BVH
    joints' local rotations in the Y-up space (N = len(BVH_JOINTS))."""
    index = [joint.frame_of for joint in BVH_JOINTS]
    world = CAMERA_TO_YUP @ frames[:, index]  # global rotation of each BVH joint, Y up
    parents = [joint.parent for joint in BVH_JOINTS]
    local = world.copy()
    has_parent = np.array(parents) >= 0
    parent_world = world[:, np.maximum(parents, 0)]
    local[:, has_parent] = np.swapaxes(parent_world[:, has_parent], -1, -2) @ world[:, has_parent]
    return local


def joint_angles(frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """(T, 21, 3, 3) bone frames -> (T, N, 3) BVH angles (z, x, y) in degrees, each frame
    continuous with the one before (and the first with `previous` (N, 3) degrees, if given)."""
    local = local_rotations(frames)
    out = np.zeros(local.shape[:2] + (3,))
    last = None if previous is None else np.radians(previous)
    for t in range(len(local)):
        last = continuous_euler_zxy(local[t], last)
        out[t] = last
    return np.degrees(out)


def _hierarchy_text(offsets: np.ndarray, scale: float) -> list[str]:
    """The HIERARCHY section for rest offsets (21, 3) (body frame mm = BVH axes)."""
    lines = ["HIERARCHY"]
    depth_of: list[int] = []
    open_depths: list[int] = []

    def close_to(depth: int) -> None:
        while open_depths and open_depths[-1] >= depth:
            lines.append("  " * open_depths.pop() + "}")

    for index, joint in enumerate(BVH_JOINTS):
        depth = 0 if joint.parent < 0 else depth_of[joint.parent] + 1
        depth_of.append(depth)
        close_to(depth)
        pad = "  " * depth
        offset = np.zeros(3) if joint.offset_of < 0 else offsets[joint.offset_of] * scale
        lines += [pad + ("ROOT " if index == 0 else "JOINT ") + joint.name, pad + "{",
                  pad + "  OFFSET " + " ".join(f"{v:.6f}" for v in offset)]  # fmt: skip
        channels = "6 Xposition Yposition Zposition " if index == 0 else "3 "
        lines.append(pad + "  CHANNELS " + channels + CHANNELS)
        open_depths.append(depth)
        if joint.end >= 0:
            end = " ".join(f"{v:.6f}" for v in offsets[joint.end] * scale)
            lines += [pad + "  End Site", pad + "  {", pad + "    OFFSET " + end, pad + "  }"]
    close_to(0)
    return lines


def bvh_text(pose: Pose, offsets: np.ndarray, fps: float, scale: float = 0.001) -> str:
    """A whole BVH file for one person: pose over T frames (P = T), rest offsets (21, 3) mm."""
    if not np.isfinite(offsets).all() or len(pose.root) == 0:
        raise ValueError("bvh: need at least one frame and finite bone offsets")
    _, frames = forward_kinematics(pose, np.broadcast_to(offsets, (len(pose.root), NUM_JOINTS, 3)))
    angles = joint_angles(frames)  # (T, N, 3)
    root = pose.root @ CAMERA_TO_YUP.T * scale
    lines = _hierarchy_text(offsets, scale)
    lines += ["MOTION", f"Frames: {len(root)}", f"Frame Time: {1.0 / fps:.8f}"]
    for t in range(len(root)):
        values = np.concatenate([root[t], angles[t].reshape(-1)])
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


def write_bvh(path: str | Path, pose: Pose, offsets: np.ndarray, fps: float,
              scale: float = 0.001) -> Path:  # fmt: skip
    """Write `bvh_text` to path atomically (a temporary file beside it, then renamed)."""
    path = Path(path)
    text = bvh_text(pose, offsets, fps, scale)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".bvh-", suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)
    return path
