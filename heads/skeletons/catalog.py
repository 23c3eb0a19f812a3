"""The 2D skeletons of the keypoint datasets we load, as data; `SKELETONS` is the registry.

Names follow one vocabulary across datasets (`head_top`, `neck`, `left_*` / `right_*`), so a
dataset's keypoints map onto another skeleton's by name. Annotation orders are the datasets' own.
Limbs are walked from the neck (or MPII's thorax) outwards: arms, then legs, then the head, the
order greedy grouping relies on (see `coco.LIMBS18`).

Sigmas: COCO's are pycocotools' defaults. CrowdPose's are its official evaluation's (COCO's
values for the matching joints, 0.079 for head and neck). AI Challenger's come from its official
keypoint evaluation (delta = 2 sigma). PoseTrack18 reuses COCO's. MPII has no OKS; its values
(mmpose's, adapted from COCO) only serve OKS-based tools (tracking, NMS), MPII is scored by PCKh.
Human-Art's four extra points (fingers, toes) use the ankle's 0.089, as Human-Art's release does.
"""

from __future__ import annotations

import numpy as np

from .coco import COCO17_NAMES, COCO17_SIGMAS, COCO17_SKELETON, LIMBS18, OPENPOSE18_NAMES
from .skeleton import Skeleton

NECK_FROM_SHOULDERS = (("neck", "left_shoulder", "right_shoulder"),)


def _named(
    pairs: tuple[tuple[int, int], ...], names: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    return tuple((names[a], names[b]) for a, b in pairs)


# Redundant torso limbs, walked last: each shoulder to both hips (same side and across; a hip-hip
# limb cannot be flipped, its mirror is itself reversed). Where the neck is derived from both
# shoulders, one unlabelled shoulder leaves no neck, and without these the head and arms, the
# right leg and the left leg decode as three people (measured on the Human-Art sample:
# docs/pose2d.md, "Round trip on the real samples of each format"). Not in COCO's LIMBS18:
# released models depend on its 19 limbs.
TORSO_LIMBS: tuple[tuple[str, str], ...] = tuple(
    (f"{side}_shoulder", f"{hip}_hip")
    for side in ("right", "left")
    for hip in ((side, "left" if side == "right" else "right"))
)


def _body_limbs(hub: str, hips_from: str | None = None) -> tuple[tuple[str, str], ...]:
    """Arms and legs walked from `hub` (the legs from `hips_from`, default the hub)."""
    hips = hips_from or hub
    limbs: list[tuple[str, str]] = []
    for side in ("right", "left"):
        limbs += [
            (hub, f"{side}_shoulder"),
            (f"{side}_shoulder", f"{side}_elbow"),
            (f"{side}_elbow", f"{side}_wrist"),
        ]
    for side in ("right", "left"):
        limbs += [(hips, f"{side}_hip"), (f"{side}_hip", f"{side}_knee")]
        limbs += [(f"{side}_knee", f"{side}_ankle")]
    return tuple(limbs)


COCO17 = Skeleton(
    name="coco17",
    keypoints=COCO17_NAMES,
    sigmas=tuple(float(s) for s in COCO17_SIGMAS),
    limbs=_named(LIMBS18, OPENPOSE18_NAMES),
    derived=NECK_FROM_SHOULDERS,
    model_keypoints=OPENPOSE18_NAMES,
    draw=_named(COCO17_SKELETON, COCO17_NAMES),
    source="COCO person keypoints; the model order and limbs are OpenPose's COCO model",
)

# The COCO facts by their older names, as the codec, the 3D read-out and the tools use them.
# Under a horizontal flip, keypoint i of the flipped image is keypoint FLIP[i] of the original.
COCO17_FLIP: tuple[int, ...] = COCO17.flip
OPENPOSE18_FLIP: tuple[int, ...] = COCO17.model_flip
LIMBS18_FLIP: tuple[int, ...] = COCO17.limb_flip
# OPENPOSE18_FROM_COCO17[i] = COCO index of OpenPose keypoint i (-1 for the neck, which is derived).
OPENPOSE18_FROM_COCO17: tuple[int, ...] = COCO17.model_from_annotation
# COCO17_FROM_OPENPOSE18[k] = OpenPose index of COCO keypoint k.
COCO17_FROM_OPENPOSE18: tuple[int, ...] = COCO17.annotation_from_model


def coco17_to_openpose18(keypoints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) COCO (x, y, v) -> (..., 18, 3) OpenPose order with the neck added: the
    shoulders' midpoint, labelled only when both shoulders are (v = the smaller of the two)."""
    return COCO17.to_model(keypoints)


def openpose18_to_coco17(keypoints: np.ndarray) -> np.ndarray:
    """(..., 18, C) OpenPose order -> (..., 17, C) COCO order (the neck is dropped)."""
    return COCO17.from_model(keypoints)


# COCO's order with the eyes replaced by the bottom and the top of the head; ears are rarely
# labelled. The neck is derived from the shoulders as for COCO (head_bottom is the chin).
POSETRACK18_NAMES = ("nose", "head_bottom", "head_top") + COCO17_NAMES[3:]
POSETRACK18 = Skeleton(
    name="posetrack18",
    keypoints=POSETRACK18_NAMES,
    sigmas=tuple(float(s) for s in COCO17_SIGMAS),
    limbs=_body_limbs("neck")
    + (("neck", "head_bottom"), ("head_bottom", "nose"), ("head_bottom", "head_top"))
    + (("nose", "right_ear"), ("nose", "left_ear")),
    derived=NECK_FROM_SHOULDERS,
    source="PoseTrack 2018 (COCO-format json per video)",
)

_LIMB_JOINTS = tuple(
    f"{side}_{joint}"
    for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    for side in ("left", "right")
)
CROWDPOSE14 = Skeleton(
    name="crowdpose14",
    keypoints=_LIMB_JOINTS + ("head_top", "neck"),  # the json calls the head top "head"
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107)
    + (0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    limbs=_body_limbs("neck") + (("neck", "head_top"),),
    source="CrowdPose (COCO-format json with per-image crowdIndex)",
)

AIC14 = Skeleton(
    name="aic14",
    keypoints=tuple(
        f"{side}_{joint}" for side in ("right", "left") for joint in ("shoulder", "elbow", "wrist")
    )
    + tuple(f"{side}_{joint}" for side in ("right", "left") for joint in ("hip", "knee", "ankle"))
    + ("head_top", "neck"),
    sigmas=(0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144)
    + (0.03909642, 0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081)
    + (0.01291456, 0.01236173),
    limbs=_body_limbs("neck") + (("neck", "head_top"),),
    source="AI Challenger 2017 keypoints (COCO-format json)",
)

MPII16 = Skeleton(
    name="mpii16",
    keypoints=("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle")
    + ("pelvis", "thorax", "upper_neck", "head_top")
    + ("right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow")
    + ("left_wrist",),
    sigmas=(0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026)
    + (0.062, 0.072, 0.179, 0.179, 0.072, 0.062),
    limbs=_body_limbs("thorax", hips_from="pelvis")[:6]
    + (("thorax", "pelvis"),)
    + _body_limbs("thorax", hips_from="pelvis")[6:]
    + (("thorax", "upper_neck"), ("upper_neck", "head_top")),
    source="MPII Human Pose (json list layout: joints, joints_vis, center, scale)",
)

HUMANART21_NAMES = COCO17_NAMES + ("left_finger", "right_finger", "left_toe", "right_toe")
HUMANART21 = Skeleton(
    name="humanart21",
    keypoints=HUMANART21_NAMES,
    sigmas=tuple(float(s) for s in COCO17_SIGMAS) + (0.089,) * 4,
    limbs=_named(LIMBS18, OPENPOSE18_NAMES)
    + tuple((f"{side}_wrist", f"{side}_finger") for side in ("right", "left"))
    + tuple((f"{side}_ankle", f"{side}_toe") for side in ("right", "left"))
    + TORSO_LIMBS,
    derived=NECK_FROM_SHOULDERS,
    model_keypoints=OPENPOSE18_NAMES + HUMANART21_NAMES[17:],
    draw=_named(COCO17_SKELETON, COCO17_NAMES)
    + tuple((f"{side}_wrist", f"{side}_finger") for side in ("left", "right"))
    + tuple((f"{side}_ankle", f"{side}_toe") for side in ("left", "right")),
    source="Human-Art (COCO-format json; the 21 points are in keypoints_21)",
)

# Registry: name -> skeleton. OCHuman annotates COCO-17 and uses "coco17".
SKELETONS: dict[str, Skeleton] = {
    s.name: s for s in (COCO17, CROWDPOSE14, MPII16, AIC14, POSETRACK18, HUMANART21)
}


def get_skeleton(name: str | Skeleton) -> Skeleton:
    """A skeleton by registry name (a Skeleton passes through); ValueError listing the names."""
    if isinstance(name, Skeleton):
        return name
    try:
        return SKELETONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown skeleton {name!r}; choose one of: {', '.join(SKELETONS)}"
        ) from None


# Points that two datasets name differently but place alike, for mapping one dataset's
# annotations onto another skeleton: MPII's thorax sits between the shoulders where the others'
# neck is; its upper neck is PoseTrack's bottom of the head.
SAME_POINTS: dict[str, str] = {"thorax": "neck", "upper_neck": "head_bottom"}


def annotation_map(source: str | Skeleton, target: str | Skeleton) -> tuple[int, ...]:
    """For each keypoint of `target`'s annotation order, the index of the same point in
    `source`'s annotation order, -1 where `source` does not annotate it (then it is unlabelled:
    masked in the loss, not trained as absent). Points match by name, or through SAME_POINTS."""
    source, target = get_skeleton(source), get_skeleton(target)
    names = [SAME_POINTS.get(n, n) for n in source.keypoints]
    out = []
    for name in target.keypoints:
        canonical = SAME_POINTS.get(name, name)
        out.append(names.index(canonical) if canonical in names else -1)
    return tuple(out)
