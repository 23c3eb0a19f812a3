"""Rendering synthetic people: textured backgrounds and shaded limb capsules drawn back to front.

Every part (torso, head, limbs) is a capsule or disc with a fake cylinder shading (darker rim,
lighter core), darker with distance. A label image records which part of which person is on top
at every pixel (label = person * 32 + part + 1), from which visibility and areas follow.
"""

from __future__ import annotations

import cv2
import numpy as np

from .synthetic_body import J

SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing
ONE = 1 << SHIFT

# (name, joint a, joint b, radius mm, material); the head is drawn specially.
PARTS: tuple[tuple[str, int, int, float, str], ...] = (
    ("belly", J["pelvis"], J["spine"], 135.0, "shirt"),
    ("chest", J["spine"], J["neck"], 150.0, "shirt"),
    ("shoulders", J["left_shoulder"], J["right_shoulder"], 65.0, "shirt"),
    ("hips", J["left_hip"], J["right_hip"], 95.0, "pants"),
    ("neck", J["neck"], J["head"], 50.0, "skin"),
    ("head", J["head"], J["head"], 100.0, "skin"),
    ("left_upper_arm", J["left_shoulder"], J["left_elbow"], 52.0, "shirt"),
    ("right_upper_arm", J["right_shoulder"], J["right_elbow"], 52.0, "shirt"),
    ("left_forearm", J["left_elbow"], J["left_wrist"], 42.0, "sleeve"),
    ("right_forearm", J["right_elbow"], J["right_wrist"], 42.0, "sleeve"),
    ("left_hand", J["left_wrist"], J["left_hand"], 38.0, "skin"),
    ("right_hand", J["right_wrist"], J["right_hand"], 38.0, "skin"),
    ("left_thigh", J["left_hip"], J["left_knee"], 78.0, "pants"),
    ("right_thigh", J["right_hip"], J["right_knee"], 78.0, "pants"),
    ("left_shin", J["left_knee"], J["left_ankle"], 58.0, "pants"),
    ("right_shin", J["right_knee"], J["right_ankle"], 58.0, "pants"),
    ("left_foot", J["left_ankle"], J["left_foot"], 45.0, "shoes"),
    ("right_foot", J["right_ankle"], J["right_foot"], 45.0, "shoes"),
)
PART_INDEX = {name: index for index, (name, *_rest) in enumerate(PARTS)}

# For each COCO keypoint, the parts that may cover it while it stays visible.
_OWNERS = (
    ("head",), ("head",), ("head",), ("head",), ("head",),
    ("shoulders", "chest", "left_upper_arm"), ("shoulders", "chest", "right_upper_arm"),
    ("left_upper_arm", "left_forearm"), ("right_upper_arm", "right_forearm"),
    ("left_forearm", "left_hand"), ("right_forearm", "right_hand"),
    ("hips", "belly", "left_thigh"), ("hips", "belly", "right_thigh"),
    ("left_thigh", "left_shin"), ("right_thigh", "right_shin"),
    ("left_shin", "left_foot"), ("right_shin", "right_foot"),
)  # fmt: skip
KEYPOINT_OWNERS: tuple[tuple[int, ...], ...] = tuple(
    tuple(PART_INDEX[name] for name in names) for names in _OWNERS
)
SKIN_TONES = ((70, 105, 160), (95, 140, 200), (120, 170, 225), (60, 85, 120), (140, 185, 235))


def render_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR: smooth colour fields, random shapes and lines, grain."""
    coarse = rng.uniform(30, 220, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3))
    image = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(8, 30))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        x, y = int(rng.integers(-width // 4, width)), int(rng.integers(-height // 4, height))
        size = int(rng.integers(8, max(9, width // 3)))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(8, size + 9))), colour, -1)
        elif kind == 1:
            axes = (size // 2 + 1, int(rng.integers(4, size + 5)) // 2 + 1)
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            end = (x + int(rng.integers(-width, width)), y + int(rng.integers(-height, height)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 12)), cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 3.0)))
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 10))
    return np.clip(image, 0, 255).astype(np.uint8)


def person_materials(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """BGR colours of one person's skin, clothes, shoes and hair."""
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float64) * rng.uniform(0.9, 1.1)
    shirt = rng.uniform(20, 240, 3)
    return {
        "skin": skin,
        "shirt": shirt,
        "sleeve": skin if rng.random() < 0.5 else shirt,
        "pants": rng.uniform(15, 200, 3),
        "shoes": rng.uniform(10, 90, 3),
        "hair": rng.uniform(10, 110, 3) * np.array([0.6, 0.8, 1.0]),
    }


def _fixed(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0] * ONE)), int(round(point[1] * ONE))


def _is_point(start: np.ndarray, end: np.ndarray) -> bool:
    """A capsule with coincident ends is a disc (the head)."""
    return abs(start[0] - end[0]) < 1e-6 and abs(start[1] - end[1]) < 1e-6


def _shaded_capsule(image, start, end, radius: float, colour: np.ndarray) -> None:
    """Three nested strokes (rim dark, core light, shifted up-left) fake a lit cylinder."""
    shift = np.array([-0.25, -0.3]) * radius
    for fraction, brightness in ((1.0, 0.55), (0.72, 0.8), (0.4, 1.0)):
        offset = shift * (1.0 - fraction)
        width = max(1, int(round(2 * radius * fraction)))
        paint = tuple(float(c) for c in np.clip(colour * brightness, 0, 255))
        if _is_point(start, end):
            cv2.circle(image, _fixed(start + offset), int(radius * fraction * ONE), paint, -1,
                       cv2.LINE_AA, SHIFT)  # fmt: skip
        else:
            cv2.line(image, _fixed(start + offset), _fixed(end + offset), paint, width,
                     cv2.LINE_AA, SHIFT)  # fmt: skip


def _label_capsule(labels, start, end, radius: float, label: int) -> None:
    if _is_point(start, end):
        cv2.circle(labels, _fixed(start), int(radius * ONE), label, -1, cv2.LINE_8, SHIFT)
    else:
        width = max(1, int(round(2 * radius)))
        cv2.line(labels, _fixed(start), _fixed(end), label, width, cv2.LINE_8, SHIFT)


def render_people(
    image: np.ndarray,
    people: list[dict],
    focal: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw every part of every person, farthest first, onto `image` (in place).

    people: dicts with "joints" (21, 3) and "face" (5, 3) in camera mm, "uv" (21, 2) and
    "face_uv" (5, 2) projected pixels, "materials". Returns the (H, W) uint16 label image.
    """
    labels = np.zeros(image.shape[:2], np.uint16)
    light = rng.uniform(0.75, 1.15)
    queue = []
    for p, person in enumerate(people):
        for index, (_, a, b, _radius, _material) in enumerate(PARTS):
            depth = 0.5 * (person["joints"][a, 2] + person["joints"][b, 2])
            queue.append((depth, p, index))
    for depth, p, index in sorted(queue, reverse=True):
        person = people[p]
        _, a, b, radius_mm, material = PARTS[index]
        radius = radius_mm * focal / depth
        shade = light * float(np.clip(1.2 - depth / 14000.0, 0.5, 1.0))
        colour = person["materials"][material] * shade
        start, end = person["uv"][a], person["uv"][b]
        if PARTS[index][0] == "head":
            _draw_head(image, person, radius, shade)
        else:
            _shaded_capsule(image, start, end, radius, colour)
        _label_capsule(labels, start, end, radius, p * 32 + index + 1)
    return labels


def facing_camera(point: np.ndarray, centre: np.ndarray) -> float:
    """Cosine between the normal at `point` (from `centre`) and the direction to the camera."""
    normal = point - centre
    view = -point
    return float(normal @ view / (np.linalg.norm(normal) * np.linalg.norm(view) + 1e-9))


def _draw_head(image, person: dict, radius: float, shade: float) -> None:
    """Skin disc with hair on the far side, and eye/nose dots when the face looks our way."""
    centre_uv, centre = person["uv"][J["head"]], person["joints"][J["head"]]
    top_uv = person["uv"][J["head_top"]]
    up = (top_uv - centre_uv) / (np.linalg.norm(top_uv - centre_uv) + 1e-9)
    skin, hair = person["materials"]["skin"] * shade, person["materials"]["hair"] * shade
    nose_facing = facing_camera(person["face"][0], centre)
    if nose_facing > 0:  # face visible: hair as a cap on top
        _shaded_capsule(image, centre_uv + up * radius * 0.3, centre_uv + up * radius * 0.3,
                        radius * 0.95, hair)  # fmt: skip
        _shaded_capsule(image, centre_uv, centre_uv, radius * 0.92, skin)
    else:  # back of the head: mostly hair
        _shaded_capsule(image, centre_uv, centre_uv, radius, skin)
        _shaded_capsule(image, centre_uv + up * radius * 0.1, centre_uv + up * radius * 0.1,
                        radius * (0.95 + 0.5 * nose_facing), hair)  # fmt: skip
    dot = max(1.0, radius * 0.13)
    for index, paint in ((1, (30, 30, 40)), (2, (30, 30, 40)), (0, tuple(skin * 0.6))):
        if facing_camera(person["face"][index], centre) > 0.2:
            colour = tuple(float(c) for c in paint)
            cv2.circle(image, _fixed(person["face_uv"][index]), int(dot * ONE), colour, -1,
                       cv2.LINE_AA, SHIFT)  # fmt: skip
