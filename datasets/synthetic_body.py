"""An articulated 3D body for the synthetic people generator: bone lengths, joint-angle ranges,
forward kinematics.

Body frame (millimetres): x = the person's left, y = up, z = forward (right-handed). The 21 joints
follow the XNect/MPI-INF-3DHP order (DESIGN.md section 4; `heads.skeletons.JOINTS21_NAMES`, which
a test keeps equal to JOINT_NAMES here: datasets may not import heads). Five face points (nose,
eyes, ears) complete COCO's 17 keypoints.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "pelvis", "spine", "head", "right_hand", "left_hand", "right_foot", "left_foot",
)  # fmt: skip
J = {name: index for index, name in enumerate(JOINT_NAMES)}
FACE_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")

# Face points in the head frame (origin at the head centre, mm).
FACE_OFFSETS = np.array(
    [[0, -15, 105], [35, 20, 85], [-35, 20, 85], [80, 5, -10], [-80, 5, -10]], np.float64
)

# Mean adult bone lengths (mm); each person scales them all and jitters each a little.
BONES = {
    "pelvis_spine": 240.0,
    "spine_neck": 260.0,
    "neck_head": 120.0,
    "head_top": 110.0,
    "neck_shoulder": 175.0,
    "upper_arm": 290.0,
    "forearm": 255.0,
    "hand": 90.0,
    "pelvis_hip": 95.0,
    "thigh": 430.0,
    "shin": 415.0,
    "foot": 150.0,
}


def rot_x(degrees: float) -> np.ndarray:
    """Rotation about x; positive tilts +y towards +z (a forward bend of an upward bone)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(degrees: float) -> np.ndarray:
    """Rotation about the vertical axis (turning)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(degrees: float) -> np.ndarray:
    """Rotation about z; positive turns -y (a hanging bone) towards +x (the person's left)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def sample_bones(rng: np.random.Generator) -> dict[str, float]:
    """Bone lengths of one person: a global size (children to tall adults) and +-6% per bone."""
    size = rng.uniform(0.8, 1.12)
    return {name: length * size * rng.uniform(0.94, 1.06) for name, length in BONES.items()}


def sample_angles(rng: np.random.Generator) -> dict[str, float]:
    """Joint angles (degrees) inside plausible ranges; the posture decides the legs."""
    u = rng.uniform
    posture = rng.choice(["stand", "walk", "crouch", "reach"], p=[0.35, 0.3, 0.15, 0.2])
    angles = {
        "spine_bend": u(-5, 25),
        "spine_twist": u(-25, 25),
        "chest_bend": u(-5, 15),
        "head_yaw": u(-60, 60),
        "head_pitch": u(-25, 30),
        "head_roll": u(-15, 15),
    }
    for side in ("left", "right"):
        reach = posture == "reach" and rng.random() < 0.7
        angles[f"{side}_arm_flex"] = u(60, 175) if reach else u(-40, 100)
        angles[f"{side}_arm_abduct"] = u(0, 110)
        angles[f"{side}_arm_twist"] = u(-70, 70)
        angles[f"{side}_elbow"] = u(0, 145)
        angles[f"{side}_leg_abduct"] = u(-5, 35)
        angles[f"{side}_leg_twist"] = u(-30, 30)
        if posture == "crouch":
            angles[f"{side}_leg_flex"], angles[f"{side}_knee"] = u(60, 115), u(80, 140)
        else:
            angles[f"{side}_leg_flex"], angles[f"{side}_knee"] = u(-20, 45), u(0, 45)
    if posture == "walk":  # opposite legs and arms swing against each other
        swing = u(15, 35)
        angles["left_leg_flex"], angles["right_leg_flex"] = swing, -swing * 0.6
        angles["right_knee"] = u(10, 60)
        angles["left_arm_flex"], angles["right_arm_flex"] = -swing, swing
        angles["left_arm_abduct"] = u(0, 15)
        angles["right_arm_abduct"] = u(0, 15)
    return angles


def pose_body(bones: dict[str, float], angles: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics in the body frame with the pelvis at the origin.

    Returns joints (21, 3) and face points (5, 3) in millimetres.
    """
    joints = np.zeros((len(JOINT_NAMES), 3))
    up = np.array([0.0, 1.0, 0.0])
    down = -up
    spine_r = rot_x(angles["spine_bend"]) @ rot_y(angles["spine_twist"])
    joints[J["spine"]] = spine_r @ up * bones["pelvis_spine"]
    chest_r = spine_r @ rot_x(angles["chest_bend"])
    joints[J["neck"]] = joints[J["spine"]] + chest_r @ up * bones["spine_neck"]
    head_r = chest_r @ rot_y(angles["head_yaw"]) @ rot_x(angles["head_pitch"])
    head_r = head_r @ rot_z(angles["head_roll"])
    joints[J["head"]] = joints[J["neck"]] + head_r @ up * bones["neck_head"]
    joints[J["head_top"]] = joints[J["head"]] + head_r @ up * bones["head_top"]
    face = joints[J["head"]] + FACE_OFFSETS @ head_r.T
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder = joints[J["neck"]] + chest_r @ np.array([sign * bones["neck_shoulder"], -25, 0])
        arm_r = chest_r @ rot_z(sign * angles[f"{side}_arm_abduct"])
        arm_r = arm_r @ rot_x(-angles[f"{side}_arm_flex"]) @ rot_y(angles[f"{side}_arm_twist"])
        elbow = shoulder + arm_r @ down * bones["upper_arm"]
        fore_r = arm_r @ rot_x(-angles[f"{side}_elbow"])  # elbows bend forward
        wrist = elbow + fore_r @ down * bones["forearm"]
        hand = wrist + fore_r @ down * bones["hand"]
        hip = np.array([sign * bones["pelvis_hip"], -55.0, 0.0])
        leg_r = rot_z(sign * angles[f"{side}_leg_abduct"]) @ rot_x(-angles[f"{side}_leg_flex"])
        leg_r = leg_r @ rot_y(angles[f"{side}_leg_twist"])
        knee = hip + leg_r @ down * bones["thigh"]
        shin_r = leg_r @ rot_x(angles[f"{side}_knee"])  # knees bend backward
        ankle = knee + shin_r @ down * bones["shin"]
        foot = ankle + shin_r @ np.array([0.0, -0.3, 1.0]) / np.hypot(0.3, 1.0) * bones["foot"]
        for name, point in (
            ("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist), ("hand", hand),
            ("hip", hip), ("knee", knee), ("ankle", ankle), ("foot", foot),
        ):  # fmt: skip
            joints[J[f"{side}_{name}"]] = point
    return joints, face
