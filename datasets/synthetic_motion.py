"""Synthetic motion: people walking, turning and swinging their arms, with exact per-frame truth.

Each person of a sequence has one body (`synthetic_body.sample_bones`) and smooth joint-angle
trajectories inside the body's ranges (`synthetic_body.pose_body` turns them into joints):
- "walk": a gait cycle (0.8-1.1 Hz) with legs and arms swinging in opposition, along a line;
- "turn": the same gait along an arc (the heading turns 25-60 degrees per second);
- "arms": standing, arms swinging forward, sideways and bending, the body turning and leaning.
The feet carry the body: the lower foot stays put on the ground each frame (the truth has no foot
slide), so walkers drift across the scene (the middle of their path inside the view). The lowest
joint is 30 mm above the ground (as in `synthetic_people`); people may enter late or leave early.
The camera is one `synthetic_people.sample_camera` for the whole sequence. Deterministic for a
seed. `render_sequence` draws the frames (JPEGs or a video) and writes the truth as JSON.

    python -m selecsls.datasets.synthetic_motion --out DIR --frames 90 --size 512x320 \
        --people 3 --seed 0 [--fps 30] [--video]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from .synthetic_body import JOINT_NAMES, J, pose_body, rot_x, rot_y, rot_z, sample_bones
from .synthetic_people import (
    DEPTH_RANGE,
    coco_keypoints,
    parse_size,
    project,
    sample_camera,
    world_to_camera,
)
from .synthetic_render import person_materials, render_background, render_people

MOTIONS = ("walk", "turn", "arms")


def gait_angles(phase: float, rng_values: dict) -> dict[str, float]:
    """Joint angles (degrees, `synthetic_body` names) of a walk at gait phase (radians)."""
    s, v = np.sin(phase), rng_values
    swing, knee = v["swing"], v["knee"]
    angles = {
        "spine_bend": v["lean"] + 2.0 * np.sin(2 * phase),
        "spine_twist": 6.0 * s,
        "chest_bend": 3.0,
        "head_yaw": v["look"] * np.sin(phase / 4 + v["look_phase"]),
        "head_pitch": 5.0 + 4.0 * np.sin(phase / 3),
        "head_roll": 3.0 * np.sin(phase / 5),
    }
    for side, sign in (("left", 1.0), ("right", -1.0)):
        angles[f"{side}_leg_flex"] = 6.0 + sign * swing * s
        # the knee bends most while its leg swings forward (phase 90 degrees ahead of the hip)
        angles[f"{side}_knee"] = 6.0 + knee * 0.5 * (1 + sign * np.sin(phase + 1.2))
        angles[f"{side}_leg_abduct"] = 3.0
        angles[f"{side}_leg_twist"] = 0.0
        angles[f"{side}_arm_flex"] = -sign * 0.8 * swing * s
        angles[f"{side}_arm_abduct"] = 8.0
        angles[f"{side}_arm_twist"] = 0.0
        angles[f"{side}_elbow"] = 20.0 + 12.0 * (0.5 + 0.5 * sign * s)
    return angles


def arm_angles(t: float, v: dict) -> dict[str, float]:
    """Joint angles of a person standing and swinging their arms, at time t (s)."""
    w = 2 * np.pi * v["rate"] * t
    angles = {
        "spine_bend": v["lean"] + 4.0 * np.sin(w / 2),
        "spine_twist": 15.0 * np.sin(w / 2 + 0.5),
        "chest_bend": 4.0,
        "head_yaw": v["look"] * np.sin(w / 3 + v["look_phase"]),
        "head_pitch": 8.0 * np.sin(w / 2),
        "head_roll": 4.0 * np.sin(w / 4),
    }
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shift = 0.0 if sign > 0 else v["arm_lag"]
        angles[f"{side}_arm_flex"] = 35.0 + 35.0 * np.sin(w + shift)
        angles[f"{side}_arm_abduct"] = 30.0 + 25.0 * np.sin(0.7 * w + shift + 1.0)
        angles[f"{side}_arm_twist"] = 15.0 * np.sin(0.5 * w + shift)
        angles[f"{side}_elbow"] = 50.0 + 40.0 * np.sin(1.3 * w + shift)
        angles[f"{side}_leg_flex"] = 4.0 + 4.0 * sign * np.sin(w / 3)
        angles[f"{side}_knee"] = 8.0 + 6.0 * np.sin(w / 3 + sign)
        angles[f"{side}_leg_abduct"] = 6.0 + 3.0 * np.sin(w / 4)
        angles[f"{side}_leg_twist"] = 5.0 * sign
    return angles


def plan_person(rng: np.random.Generator, camera: dict, width: int, frames: int, fps: float,
                depth_range: tuple[float, float], whole: bool = False) -> dict:  # fmt: skip
    """One person's motion: kind, body, active frames (all of them when `whole`; else 40% enter
    late and 40% leave early), heading (degrees) per active frame, the middle of its path
    (world x, z mm; x right, z towards the camera) and a per-frame angle function."""
    kind = str(rng.choice(MOTIONS))
    first = 0 if rng.random() < 0.6 else int(rng.integers(1, frames // 3 + 2))
    last = frames - 1 if rng.random() < 0.6 else int(rng.integers(2 * frames // 3, frames - 1))
    if whole:
        first, last = 0, frames - 1
    times = np.arange(first, last + 1) / fps
    values = {"swing": rng.uniform(18, 28), "knee": rng.uniform(25, 45), "lean": rng.uniform(0, 8),
              "look": rng.uniform(0, 30), "look_phase": rng.uniform(0, 6.3),
              "rate": rng.uniform(0.3, 0.7), "arm_lag": rng.uniform(0, 3.1)}  # fmt: skip
    gait = rng.uniform(0.8, 1.1) * 2 * np.pi  # radians per second
    heading = rng.uniform(-180, 180) + np.zeros_like(times)
    if kind == "turn":
        heading += rng.choice([-1, 1]) * rng.uniform(25, 60) * (times - times[0])
    near, far = 1000.0 * depth_range[0], 1000.0 * depth_range[1]
    depth = near * (far / near) ** rng.uniform(0.1, 0.7)
    half_width = depth * (width / 2) / camera["f"]
    centre = np.array([rng.uniform(-0.5, 0.5) * half_width, -depth])  # middle of the path
    phase0 = rng.uniform(0, 2 * np.pi)
    lean = rot_x(rng.uniform(-4, 4)) @ rot_z(rng.uniform(-3, 3))

    def angles_at(k: int) -> dict[str, float]:
        if kind == "arms":
            return arm_angles(times[k], values)
        return gait_angles(phase0 + gait * times[k], values)

    return {"kind": kind, "bones": sample_bones(rng), "first": first, "last": last,
            "heading": heading, "centre": centre, "near": near, "angles": angles_at, "lean": lean,
            "materials": person_materials(rng)}  # fmt: skip


def pose_person(plan: dict, camera: dict) -> tuple[np.ndarray, np.ndarray]:
    """Joints (T, 21, 3) and face points (T, 5, 3) in camera mm over the plan's active frames.

    The body moves by its feet: each frame, the lower foot stays where it was on the ground (no
    foot slide in the truth), so walking carries the person forward and turning turns them about
    the standing foot; the path is then centred on the plan's centre."""
    posed = []
    for k in range(len(plan["heading"])):
        joints, face = pose_body(plan["bones"], plan["angles"](k))
        rotation = rot_y(plan["heading"][k]) @ plan["lean"]
        posed.append((joints @ rotation.T, face @ rotation.T))
    joints = np.stack([p[0] for p in posed])  # (T, 21, 3) body frame turned, pelvis at 0
    face = np.stack([p[1] for p in posed])
    feet = joints[:, [J["left_foot"], J["right_foot"]]]  # (T, 2, 3)
    lowest = np.minimum(feet[..., 1], joints[:, [J["left_ankle"], J["right_ankle"]], 1])
    stance = lowest.argmin(1)  # (T,) the foot on the ground
    shift = np.zeros((len(joints), 3))
    for k in range(1, len(joints)):
        foot = feet[np.arange(k - 1, k + 1), stance[k]]  # the standing foot at k - 1 and k
        shift[k] = shift[k - 1] + foot[0] - foot[1]
    shift[:, 1] = 30.0 - joints[..., 1].min(1)  # lowest joint 30 mm above the ground
    centre = 0.5 * (shift.min(0) + shift.max(0))
    shift[:, [0, 2]] += plan["centre"] - centre[[0, 2]]
    shift[:, 2] = np.minimum(shift[:, 2], -plan["near"] * 0.8)  # never into the camera
    return world_to_camera(joints + shift[:, None], camera), world_to_camera(
        face + shift[:, None], camera
    )


def make_sequence(seed: int = 0, frames: int = 90, size: tuple[int, int] = (512, 320),
                  people: int = 3, fps: float = 30.0,
                  depth_range: tuple[float, float] = DEPTH_RANGE) -> dict:  # fmt: skip
    """A sequence's truth: {"camera": {"f": (2,), "c": (2,) pixels, "height" mm, "tilt"
    degrees (`synthetic_people.world_to_camera`)}, "fps", "size", "frames",
    "people": [{"id", "kind", "first", "last", "joints" (T_i, 21, 3) camera mm, "face"
    (T_i, 5, 3), "points2d" (T_i, 21, 2) pixels, "materials"}]} (T_i = last - first + 1)."""
    width, height = size
    if frames < 2 or people < 0 or width < 32 or height < 32 or fps <= 0:
        raise ValueError(
            f"synthetic_motion: need frames >= 2, people >= 0, size >= 32x32, fps > 0; got "
            f"{frames}, {people}, {width}x{height}, {fps}"
        )
    rng = np.random.default_rng([seed, 22])
    camera = sample_camera(rng, width, height)
    out = []
    for index in range(people):
        # the first person stays the whole sequence
        plan = plan_person(rng, camera, width, frames, fps, depth_range, whole=index == 0)
        joints, face = pose_person(plan, camera)
        out.append({"id": index + 1, "kind": plan["kind"], "first": plan["first"],
                    "last": plan["last"], "joints": joints, "face": face,
                    "points2d": project(joints.reshape(-1, 3), camera).reshape(-1, 21, 2),
                    "materials": plan["materials"]})  # fmt: skip
    intrinsics = {"f": np.array([camera["f"]] * 2), "c": np.asarray(camera["c"], np.float64),
                  "height": float(camera["height"]), "tilt": float(camera["tilt"])}  # fmt: skip
    return {"camera": intrinsics, "fps": fps, "size": (width, height), "frames": frames,
            "people": out, "seed": seed}  # fmt: skip


def camera_to_world(points: np.ndarray, camera: dict) -> np.ndarray:
    """(..., 3) camera mm -> world mm (y up, ground y = 0): `world_to_camera` undone."""
    flip = np.diag([1.0, -1.0, -1.0])  # its own inverse
    return np.asarray(points) @ rot_x(camera["tilt"]) @ flip + np.array(
        [0.0, camera["height"], 0.0]
    )


def people_at(sequence: dict, t: int) -> list[dict]:
    """The people of frame t: {"id", "joints" (21, 3), "face" (5, 3), "uv" (21, 2), "face_uv"
    (5, 2), "materials"} (what `synthetic_render.render_people` draws)."""
    camera = {"f": float(sequence["camera"]["f"][0]), "c": sequence["camera"]["c"]}
    out = []
    for person in sequence["people"]:
        if person["first"] <= t <= person["last"]:
            k = t - person["first"]
            joints, face = person["joints"][k], person["face"][k]
            out.append({"id": person["id"], "joints": joints, "face": face,
                        "uv": person["points2d"][k], "face_uv": project(face, camera),
                        "materials": person["materials"]})  # fmt: skip
    return out


def render_sequence(sequence: dict, out_dir: str | Path, video: bool = False) -> Path:
    """Draw every frame (out_dir/frames/NNNNNN.jpg, or out_dir/video.mp4 with `video`) and write
    out_dir/sequence.json: camera, fps, size, joint names and per frame the people's id, COCO
    keypoints (17, 3) (v as `synthetic_people`), joints_3d (21, 3) camera mm, points_2d (21, 2)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = sequence["size"]
    seed = sequence["seed"]
    background = render_background(np.random.default_rng([seed, 23]), width, height)
    writer = None
    if video:
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        writer = cv2.VideoWriter(
            str(out_dir / "video.mp4"), fourcc, sequence["fps"], (width, height)
        )
        if not writer.isOpened():
            raise OSError(f"synthetic_motion: OpenCV cannot write {out_dir / 'video.mp4'}")
    else:
        (out_dir / "frames").mkdir(exist_ok=True)
    frames = []
    focal = float(sequence["camera"]["f"][0])
    for t in range(sequence["frames"]):
        image = background.copy()
        people = people_at(sequence, t)
        labels = render_people(image, people, focal, np.random.default_rng([seed, 24]))
        image = cv2.GaussianBlur(image, (0, 0), 0.6)
        if writer is not None:
            writer.write(image)
        else:
            cv2.imwrite(
                str(out_dir / "frames" / f"{t:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
        frames.append({"frame": t, "people": [
            {"id": p["id"],
             "keypoints": np.round(coco_keypoints(p, i, labels).astype(np.float64), 2).tolist(),
             "joints_3d": np.round(p["joints"], 1).tolist(),
             "points_2d": np.round(p["uv"], 2).tolist()}
            for i, p in enumerate(people)]})  # fmt: skip
    if writer is not None:
        writer.release()
    truth = {"camera": {k: np.asarray(v).tolist() for k, v in sequence["camera"].items()},
             "fps": sequence["fps"], "size": list(sequence["size"]), "seed": seed,
             "joint_names": list(JOINT_NAMES),
             "people": [{"id": p["id"], "kind": p["kind"], "first": p["first"], "last": p["last"]}
                        for p in sequence["people"]],
             "frames": frames}  # fmt: skip
    path = out_dir / "sequence.json"
    path.write_text(json.dumps(truth))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames", type=int, default=90, help="sequence length (frames)")
    parser.add_argument("--size", type=parse_size, default=(512, 320), help="WxH, e.g. 512x320")
    parser.add_argument("--people", type=int, default=3, help="people in the sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--video", action="store_true", help="write video.mp4 instead of JPEGs")
    args = parser.parse_args(argv)
    try:
        sequence = make_sequence(args.seed, args.frames, args.size, args.people, args.fps)
        path = render_sequence(sequence, args.out, args.video)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.frames} frames of {args.people} people and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
