"""Check the demo's BVH files in Blender itself: imported with the importer's default settings,
are the people upright, unmirrored and where the fit put them?

    pip install bpy            # Blender as a Python module (Python 3.11), in any environment
    python -m selecsls.tools.evaluation.blender_bvh --blender-python /path/to/that/python

Writes BVH files the way the demo does (`MotionCapture` on a noisy synthetic sequence of walking
and turning people, plus a T-pose facing the camera), imports each with
`bpy.ops.import_anim.bvh(filepath=...)` and nothing else, and reads every joint's world position
in every frame (bone heads; the leaves are their bones' tails). Expected: the fitted joints taken
through the BVH convention (camera -> Y up, `heads.motion.bvh.CAMERA_TO_YUP`) and Blender's own
default axis conversion for BVH (Y up, -Z forward -> Blender's Z up, -Y forward: a rotation).
Prints the largest error in mm and the T-pose's axes: head towards +Z, left hand on +X, facing
-Y (towards Blender's front view), i.e. upright and not mirrored. Exit status 1 if any check
fails. Blender is not a dependency: the check runs where `--blender-python` has `bpy`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from selecsls.datasets.synthetic_motion import make_sequence
from selecsls.heads.motion.bones import mean_skeleton
from selecsls.heads.motion.bvh import CAMERA_TO_YUP
from selecsls.heads.motion.fitter import SkeletonFitter
from selecsls.heads.motion.kinematics import Pose, forward_kinematics, tpose_offsets
from selecsls.heads.skeletons import JOINTS21_NAMES
from selecsls.tools.realtime.fitting import InputFilters, MotionCapture

# Blender's default BVH import (axis_forward="-Z", axis_up="Y"): BVH (x, y, z) -> (x, -z, y)
BVH_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# the leaves are End Sites: their position is the tail of their parent joint's bone
LEAF_OF = {"head_top": "head", "right_hand": "right_wrist", "left_hand": "left_wrist",
           "right_foot": "right_ankle", "left_foot": "left_ankle"}  # fmt: skip
RESCALE = 5  # frames measuring the bones (the fit before them replays with the final lengths)

# Run inside Blender's Python: import with default settings, dump world positions per frame.
BLENDER_SCRIPT = """
import json, sys, bpy
path, out = sys.argv[-4], sys.argv[-3]
names, leaves = json.loads(sys.argv[-2]), json.loads(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_anim.bvh(filepath=path)
armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
action = armature.animation_data.action
start, end = (int(round(v)) for v in action.frame_range)
frames = []
for frame in range(start, end + 1):
    bpy.context.scene.frame_set(frame)
    world = armature.matrix_world
    row = []
    for name in names:
        bone = armature.pose.bones[leaves.get(name, name)]
        point = bone.tail if name in leaves else bone.head
        row.append(list(world @ point))
    frames.append(row)
json.dump({"frames": frames, "version": bpy.app.version_string}, open(out, "w"))
"""


def write_files(folder: Path) -> dict[str, np.ndarray]:
    """BVH files as the demo writes them -> {file name: expected (T, 21, 3) Blender metres}."""
    expected = {}
    sequence = make_sequence(seed=4, frames=40, people=2)
    capture = MotionCapture(SkeletonFitter(rescale_frames=RESCALE), InputFilters(), folder, 30.0)
    rng = np.random.default_rng(0)
    fitted: dict[int, list] = {}
    for t in range(sequence["frames"]):
        live = [p for p in sequence["people"] if p["first"] <= t <= p["last"]]
        joints = np.array([p["joints"][t - p["first"]] for p in live]).reshape(-1, 21, 3)
        joints = joints + rng.normal(size=joints.shape) * 20.0  # noisy: the fit is not exact
        result = capture.update([p["id"] for p in live], joints, t=t / 30.0)["result"]
        for p, fit in zip(live, result.joints):
            fitted.setdefault(p["id"], []).append(fit)
    capture.finish()
    for i, frames in fitted.items():
        expected[f"person_{i}.bvh"] = to_blender(np.array(frames))
    tpose = folder / "tpose"
    tpose.mkdir()
    joints = facing_camera_tpose()
    still = MotionCapture(SkeletonFitter(rescale_frames=2), InputFilters(enabled=False), tpose, 30)
    for t in range(3):
        last = still.update([1], joints, t=t / 30.0)["result"].joints
    still.finish()
    expected["tpose/person_1.bvh"] = to_blender(np.repeat(last, 3, axis=0))
    return expected


def facing_camera_tpose() -> np.ndarray:
    """(1, 21, 3) camera mm: a mean adult in the T-pose, 3 m in front of the camera, facing it."""
    pose = Pose.rest(1)
    pose.root[0] = [100.0, 200.0, 3000.0]
    pose.root_rotation[0] = np.diag([1.0, -1.0, -1.0])
    return forward_kinematics(pose, tpose_offsets(*mean_skeleton())[None])[0]


def to_blender(joints_mm: np.ndarray) -> np.ndarray:
    """Camera mm (T, 21, 3) -> where Blender should show them: metres, Blender's axes."""
    return joints_mm @ CAMERA_TO_YUP.T @ BVH_TO_BLENDER.T / 1000.0


def import_in_blender(python: str, path: Path, timeout: float = 300) -> dict:
    """Run BLENDER_SCRIPT on one BVH file in `python` (which has bpy) -> its JSON output."""
    with tempfile.TemporaryDirectory() as folder:
        script, out = Path(folder) / "import.py", Path(folder) / "out.json"
        script.write_text(BLENDER_SCRIPT)
        command = [python, str(script), str(path), str(out), json.dumps(JOINTS21_NAMES)]
        proc = subprocess.run(
            [*command, json.dumps(LEAF_OF)], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"Blender import of {path.name} failed: {tail}")
        return json.loads(out.read_text())


def tpose_axes(joints: np.ndarray) -> dict[str, float]:
    """One frame (21, 3), Blender axes -> the directions that say upright and unmirrored."""
    name = {n: i for i, n in enumerate(JOINTS21_NAMES)}
    centred = joints - joints[name["pelvis"]]
    up = centred[name["head_top"]] / np.linalg.norm(centred[name["head_top"]])
    foot = centred[name["left_foot"]] - centred[name["left_ankle"]]
    return {
        "head_up_z": float(up[2]),
        "left_hand_x_m": float(centred[name["left_hand"], 0]),
        "right_hand_x_m": float(centred[name["right_hand"], 0]),
        "feet_forward_minus_y": float(-foot[1] / np.linalg.norm(foot)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blender-python", required=True, help="a python that can `import bpy`")
    args = p.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        expected = write_files(Path(folder))
        for name, want in expected.items():
            result = import_in_blender(args.blender_python, Path(folder) / name)
            got = np.array(result["frames"])
            if got.shape != want.shape:
                print(f"{name}: Blender shows {got.shape[0]} frames, the file has {len(want)}")
                ok = False
                continue
            first = 0 if name.startswith("tpose") else RESCALE  # bones frozen from here
            error = 1000.0 * np.linalg.norm(got - want, axis=-1)[first:].max()
            print(f"{name} (Blender {result['version']}, {len(got)} frames): largest joint "
                  f"error {error:.3f} mm")  # fmt: skip
            ok &= error < 1.0
            if name.startswith("tpose"):
                axes = tpose_axes(got[-1])
                print("  T-pose axes: " + ", ".join(f"{k} {v:.3f}" for k, v in axes.items()))
                ok &= axes["head_up_z"] > 0.99 and axes["feet_forward_minus_y"] > 0.9
                ok &= axes["left_hand_x_m"] > 0.5 and axes["right_hand_x_m"] < -0.5
    print("all checks passed" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
