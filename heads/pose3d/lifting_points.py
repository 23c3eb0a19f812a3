"""Stage II's 2D points for ground-truth people, defined exactly as at inference.

At inference Stage II's 2D points are the 2D decode's COCO keypoints mapped by
`skeletons.coco17_to_joints21_2d`: the "head" is the NOSE (the 2D branch has no head-centre
keypoint) and the neck is the shoulders' midpoint. The projected 21-joint ground truth has the
head CENTRE (~10 cm behind the nose) and the skeleton's own neck, so training Stage II on it
would teach it one point and feed it another. `stage2_points` therefore builds the training
points from the person's COCO keypoints through the very same mapping, and falls back to the
projected joint only where the COCO keypoint is unlabelled (v = 0). The fallback keeps people
without COCO keypoints usable (MuCo-format data without a "keypoints" field, people too hidden
to label): for them the head row is still the head centre and the neck the skeleton's neck.
People whose annotation labels face points wherever they are visible (`face_labelled`: COCO and
the synthetic set) get no such head fallback: an unlabelled nose is a face turned away or
hidden, for which the 2D decoder gives no nose and so Stage II no head point.

A random yaw (the tools' Stage II augmentation) moves the person in 3D and re-projects the joints;
the nose has no 3D joint, so `nose_in_3d` recovers it from its 2D position, the head joint and
the face's direction (eyes, ears),
and `turned_keypoints` gives the turned person's COCO keypoints.
"""

from __future__ import annotations

import numpy as np

from ..skeletons import COCO17_FROM_JOINTS21, COCO17_NAMES, JOINTS21_NAMES, coco17_to_joints21_2d

NUM_JOINTS = len(JOINTS21_NAMES)
NOSE = COCO17_NAMES.index("nose")
# Head centre -> nose tip, mm: the synthetic body's face model has 106 (datasets.synthetic_body
# FACE_OFFSETS); an adult's is about 10 cm. Only used to place the nose in depth for a yaw.
NOSE_DISTANCE_MM = 105.0
_J = {name: index for index, name in enumerate(JOINTS21_NAMES)}
_FACE_PAIRS = tuple(
    (COCO17_NAMES.index(f"left_{part}"), COCO17_NAMES.index(f"right_{part}"))
    for part in ("eye", "ear")
)


def stage2_points(
    points2d: np.ndarray,
    keypoints: np.ndarray | None = None,
    face_labelled: np.ndarray | None = None,
) -> np.ndarray:
    """(P, 21, 3) projected joints (x, y, v) and optional (P, 17, 3) COCO keypoints of the same
    people, same pixels -> (P, 21, 3) float64: `coco17_to_joints21_2d(keypoints)` where it is
    labelled (head = nose, neck = mid-shoulders, as at inference), the projected joint elsewhere,
    except the head of `face_labelled` (P,) people, which is the nose or nothing (v = 0)."""
    points = np.asarray(points2d, np.float64).reshape(-1, NUM_JOINTS, 3).copy()
    if keypoints is None:
        return points
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, len(COCO17_NAMES), 3)
    if len(keypoints) != len(points):
        raise ValueError(f"{len(keypoints)} people's COCO keypoints for {len(points)} people")
    mapped = coco17_to_joints21_2d(keypoints).astype(np.float64)
    use = mapped[..., 2] > 0
    if face_labelled is not None:
        use[:, _J["head"]] |= np.asarray(face_labelled, bool).reshape(len(points))
    points[use] = mapped[use]
    return points


def _rays(points: np.ndarray, f: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(P, 2) pixels -> (P, 3) camera rays (x, y, 1)."""
    f = np.broadcast_to(np.asarray(f, np.float64), (len(points), 2))
    c = np.broadcast_to(np.asarray(c, np.float64), (len(points), 2))
    return np.concatenate([(points - c) / f, np.ones((len(points), 1))], axis=-1)


def facing(joints3d: np.ndarray, keypoints: np.ndarray, f: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(P,) the sign of (head's forward . nose ray): < 0 for a face towards the camera.

    The head's forward is its left-right axis x its up axis (head top - head). The left-right
    axis comes from the 2D eyes and ears (left - right, as camera rays); its unknown component
    along the ray does not change the sign, since (l x up) . ray = l . (up x ray). Without
    labelled eye or ear pairs the torso's forward, (left - right shoulder) x (neck - pelvis),
    stands in (it misjudges a head turned away from a torso in profile)."""
    joints = np.asarray(joints3d, np.float64).reshape(-1, NUM_JOINTS, 3)
    ray = _rays(keypoints[:, NOSE, :2], f, c)
    side = np.cross(joints[:, _J["head_top"]] - joints[:, _J["head"]], ray)  # up x ray
    score = np.zeros(len(joints))
    for left, right in _FACE_PAIRS:
        both = (keypoints[:, left, 2] > 0) & (keypoints[:, right, 2] > 0)
        across = _rays(keypoints[:, left, :2], f, c) - _rays(keypoints[:, right, :2], f, c)
        score += np.where(both, (across * side).sum(-1), 0.0)
    across = joints[:, _J["left_shoulder"]] - joints[:, _J["right_shoulder"]]
    torso = np.cross(across, joints[:, _J["neck"]] - joints[:, _J["pelvis"]])
    return np.where(score != 0, score, (torso * ray).sum(-1))


def nose_in_3d(
    joints3d: np.ndarray,
    keypoints: np.ndarray,
    f: np.ndarray,
    c: np.ndarray,
    distance: float = NOSE_DISTANCE_MM,
) -> np.ndarray:
    """(P, 21, 3) camera mm and (P, 17, 3) COCO keypoints (pixels) with the camera f, c ((2,) or
    (P, 2)) -> (P, 3) the noses in camera mm, NaN where the nose is unlabelled.

    The nose lies on its camera ray, `distance` from the head joint. The ray meets that sphere
    twice: the nearer point for a face towards the camera, the farther one for a face turned
    away (`facing`). A ray that misses the sphere gives its point closest to the head."""
    joints = np.asarray(joints3d, np.float64).reshape(-1, NUM_JOINTS, 3)
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, len(COCO17_NAMES), 3)
    ray = _rays(keypoints[:, NOSE, :2], f, c)
    head = joints[:, _J["head"]]
    a = (ray**2).sum(-1)
    b = (ray * head).sum(-1)
    root = np.sqrt(np.maximum(b**2 - a * ((head**2).sum(-1) - distance**2), 0.0))
    away = facing(joints, keypoints, f, c) > 0
    nose = ((b + np.where(away, root, -root)) / a)[:, None] * ray
    nose[keypoints[:, NOSE, 2] <= 0] = np.nan
    return nose


def turned_keypoints(
    keypoints: np.ndarray, points2d: np.ndarray, nose2d: np.ndarray | None
) -> np.ndarray:
    """COCO keypoints of people whose joints moved (e.g. turned by a yaw): (P, 17, 3) original
    keypoints, (P, 21, 3) the moved joints' 2D and (P, 2) the moved noses' 2D (NaN: none) ->
    (P, 17, 3). Body keypoints sit at their moved joints, labelled where both the original
    keypoint and the moved joint are; the nose at nose2d; eyes and ears become unlabelled
    (Stage II's points do not use them)."""
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, len(COCO17_NAMES), 3)
    points = np.asarray(points2d, np.float64).reshape(-1, NUM_JOINTS, 3)
    out = np.zeros_like(keypoints)
    for k, j in enumerate(COCO17_FROM_JOINTS21):
        if j >= 0:
            labelled = (keypoints[:, k, 2] > 0) & (points[:, j, 2] > 0)
            out[:, k, :2] = np.where(labelled[:, None], points[:, j, :2], 0.0)
            out[:, k, 2] = np.where(labelled, keypoints[:, k, 2], 0.0)
    if nose2d is not None:
        nose2d = np.asarray(nose2d, np.float64).reshape(-1, 2)
        found = (keypoints[:, NOSE, 2] > 0) & np.isfinite(nose2d).all(-1)
        out[:, NOSE, :2] = np.where(found[:, None], nose2d, 0.0)
        out[:, NOSE, 2] = np.where(found, keypoints[:, NOSE, 2], 0.0)
    return out
