"""Drawing for the demo: 2D skeletons with track ids, an FPS counter and a 3D skeleton view.

All functions draw on BGR uint8 images with OpenCV. A person's colour follows from its track id,
so it stays the same from frame to frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from selecsls.heads.skeletons import COCO17_SKELETON, JOINTS21_PARENTS, JOINTS21_ROOT

# Well separated hues (BGR) for track ids; id i gets PALETTE[i % len].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 220, 255), (255, 128, 0), (60, 220, 60), (200, 60, 255), (0, 120, 255),
    (255, 220, 0), (150, 255, 150), (255, 80, 200), (0, 60, 220), (180, 180, 255),
)  # fmt: skip
FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_of(track_id: int) -> tuple[int, int, int]:
    return PALETTE[int(track_id) % len(PALETTE)]


def _line_width(image: np.ndarray) -> int:
    return max(1, round(min(image.shape[:2]) / 240))


def draw_person(
    image: np.ndarray,
    keypoints: np.ndarray,
    track_id: int | None = None,
    colour: tuple[int, int, int] | None = None,
    limbs: tuple[tuple[int, int], ...] = COCO17_SKELETON,
) -> np.ndarray:
    """Draw one person's limbs and keypoints (K, 3) (score 0 = missing) and its id, in place."""
    colour = colour or colour_of(track_id or 0)
    width = _line_width(image)
    found = (keypoints[:, 2] > 0).tolist()
    # plain tuples of ints: OpenCV takes them directly, and per-limb numpy indexing and tuple()
    # of numpy rows cost as much as the drawing itself (a demo frame draws every person)
    points = [tuple(p) for p in np.round(keypoints[:, :2]).astype(np.int32).tolist()]
    for a, b in limbs:
        if found[a] and found[b]:
            cv2.line(image, points[a], points[b], colour, width + 1, cv2.LINE_AA)
    shown = [point for point, ok in zip(points, found) if ok]
    for point in shown:
        cv2.circle(image, point, width + 2, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(image, point, width + 1, colour, -1, cv2.LINE_AA)
    if track_id is not None and shown:
        top = min(shown, key=lambda point: point[1])  # the first topmost, as argmin
        label_at = (top[0] - 8 * width, max(top[1] - 6 * width, 12))
        _label(image, f"#{track_id}", label_at, colour, 0.45 * width)
    return image


def _label(image: np.ndarray, text: str, at: tuple[int, int], colour, scale: float) -> None:
    """Text with a dark outline, readable on any background."""
    thickness = max(1, round(scale * 2))
    cv2.putText(image, text, at, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, at, FONT, scale, colour, thickness, cv2.LINE_AA)


def draw_people(
    image: np.ndarray, people: list[dict], limbs: tuple[tuple[int, int], ...] | None = None
) -> np.ndarray:
    """Draw every person dict ({"id", "keypoints" (K, 3)}) in place; limbs: the skeleton's
    drawing edges (`Skeleton.draw_edges`, COCO's when None)."""
    limbs = limbs or COCO17_SKELETON
    for person in people:
        draw_person(image, person["keypoints"], person.get("id"), limbs=limbs)
    return image


def fitted_scale(text: str, scale: float, max_width: int) -> float:
    """`scale`, shrunk so that `text` (with its outline) is at most `max_width` pixels wide:
    a narrow frame or panel shows the whole label smaller rather than cut off."""
    thickness = max(1, round(scale * 2))
    width = cv2.getTextSize(text, FONT, scale, thickness + 2)[0][0]
    return scale if width <= max_width else scale * max(max_width, 1) / width


def draw_fps(image: np.ndarray, fps: float, extra: str = "") -> np.ndarray:
    """FPS counter (and optional extra text) in the top left corner, in place; "-- fps" until
    there is a rate to show (fps 0: the first frame has no interval yet)."""
    rate = f"{fps:.1f}" if fps > 0 else "--"
    text = f"{rate} fps {extra}".rstrip()
    scale = fitted_scale(text, 0.5 * _line_width(image), image.shape[1] - 12)
    thickness = max(1, round(scale * 2))
    (width, height), base = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.rectangle(image, (0, 0), (width + 12, height + base + 10), (0, 0, 0), -1)
    cv2.putText(image, text, (6, height + 5), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def view_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera frame (x right, y down, z forward) -> viewer frame turned `yaw` about the vertical
    axis and tilted `pitch` to look slightly down on the people."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    turn = np.array(
        [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
    )
    tilt = np.array(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]]
    )
    return tilt @ turn


def draw_pose3d_panel(
    poses: list[tuple[int, np.ndarray]],
    size: tuple[int, int],
    yaw_deg: float = 30.0,
    pitch_deg: float = 15.0,
    parents: tuple[int, ...] = JOINTS21_PARENTS,
    title: str = "3D",
) -> np.ndarray:
    """A (H, W, 3) panel showing 3D skeletons (orthographic view, turned `yaw_deg`).

    poses: [(track id, (J, 3) joints in mm, camera axes: x right, y down, z forward)], absolute or
    root-relative; the view is fitted to all of them so several people keep their layout. Joints
    that are not finite (NaN: not read out) are left out with their bones; a person with no
    finite joint is not drawn. size: (W, H) of the panel; title: its label (top left).
    """
    width, height = size
    panel = np.full((height, width, 3), 32, np.uint8)
    _label(panel, title, (8, 20), (200, 200, 200), fitted_scale(title, 0.5, width - 16))
    poses = [(i, np.asarray(j, np.float64)) for i, j in poses]
    poses = [(i, j) for i, j in poses if np.isfinite(j).all(-1).any()]
    if not poses:
        _label(panel, "no 3D pose", (8, height - 10), (160, 160, 160), 0.45)
        return panel
    rotation = view_rotation(yaw_deg, pitch_deg)
    viewed = [joints @ rotation.T for _, joints in poses]  # NaN rows stay NaN
    stacked = np.concatenate(viewed)[:, :2]
    stacked = stacked[np.isfinite(stacked).all(1)]
    low, high = stacked.min(0), stacked.max(0)
    extent = np.maximum(high - low, 500.0)  # at least half a metre: a lone joint stays small
    scale = 0.85 * min(width / extent[0], height / extent[1])
    centre = (low + high) / 2
    # floor line under the lowest joint (y grows downwards)
    floor_y = int(height / 2 + (high[1] - centre[1]) * scale) + 4
    cv2.line(panel, (8, floor_y), (width - 8, floor_y), (90, 90, 90), 1)
    for (track_id, _), joints in zip(poses, viewed):
        finite = np.isfinite(joints).all(1)
        placed = (np.nan_to_num(joints[:, :2]) - centre) * scale + [width / 2, height / 2]
        points = placed.round().astype(int)
        colour = colour_of(track_id)
        for joint, parent in enumerate(parents):
            if parent >= 0 and finite[joint] and finite[parent]:
                cv2.line(panel, tuple(points[joint]), tuple(points[parent]), colour, 2, cv2.LINE_AA)
        if finite[JOINTS21_ROOT]:
            cv2.circle(panel, tuple(points[JOINTS21_ROOT]), 3, (255, 255, 255), -1, cv2.LINE_AA)
    return panel


def compose(image: np.ndarray, panel: np.ndarray | None) -> np.ndarray:
    """The frame with the 3D panel (if any) on its right; the panel is resized to its height."""
    if panel is None:
        return image
    if panel.shape[0] != image.shape[0]:
        width = round(panel.shape[1] * image.shape[0] / panel.shape[0])
        panel = cv2.resize(panel, (width, image.shape[0]), interpolation=cv2.INTER_AREA)
    return np.hstack([image, panel])
