"""A 2D keypoint skeleton as data: what a dataset annotates and what the 2D head predicts.

A `Skeleton` holds the facts (names in the annotation order, OKS sigmas, PAF limbs, derived
points); everything else (flip permutations, limb indices, the map between the annotation order
and the head's order, channel counts) is computed from them here, so no other module keeps a
per-dataset constant.

Two orders:
- the annotation order (`keypoints`): the dataset's json, evaluation results, drawing;
- the model order (`model_keypoints`): one heatmap per keypoint of this order (+ background). It
  adds the derived points (the neck, where the dataset has none, is the shoulders' midpoint, as
  OpenPose made it for COCO) and may reorder (COCO's model order is OpenPose-18's).
Left/right mirrors are found by name (`left_*` <-> `right_*`); every other name maps to itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def mirror_name(name: str) -> str:
    """'left_wrist' -> 'right_wrist' and back; a central name maps to itself."""
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


def mirror_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    """For each name, the index of its left/right mirror (itself if central). Under a horizontal
    flip, keypoint i of the flipped image is keypoint FLIP[i] of the original."""
    return tuple(names.index(mirror_name(n)) for n in names)


def index_map(to_names: tuple[str, ...], from_names: tuple[str, ...]) -> tuple[int, ...]:
    """For each name of `to_names`, its index in `from_names` (-1 where absent)."""
    return tuple(from_names.index(n) if n in from_names else -1 for n in to_names)


@dataclass(frozen=True)
class Skeleton:
    """name: registry key; keypoints: names in the annotation order; sigmas: OKS sigmas in that
    order; limbs: PAF limbs as (from, to) names of the model order, each limb's `from` the first
    limb's or an earlier limb's endpoint (greedy grouping assigns along this walk); derived:
    (name, a, b) points made as the midpoint of annotated keypoints a and b; model_keypoints: the
    head's heatmap order (default: keypoints, then the derived names); draw: edges drawn between
    annotated keypoints (default: the limbs between annotated keypoints); source: where the
    facts come from."""

    name: str
    keypoints: tuple[str, ...]
    sigmas: tuple[float, ...]
    limbs: tuple[tuple[str, str], ...]
    derived: tuple[tuple[str, str, str], ...] = ()
    model_keypoints: tuple[str, ...] = ()
    draw: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"skeleton {self.name}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        names, model = self.keypoints, self.model_order
        if len(set(names)) != len(names) or len(set(model)) != len(model):
            problems.append("keypoint names repeat")
        if len(self.sigmas) != len(names):
            problems.append(f"{len(self.sigmas)} sigmas for {len(names)} keypoints")
        for order in (names, model):
            missing = sorted({mirror_name(n) for n in order} - set(order))
            if missing:
                problems.append(f"no mirror for {missing}")
        derived = {d[0] for d in self.derived}
        if set(model) != set(names) | derived:
            problems.append("model_keypoints must be the keypoints plus the derived points")
        for point, a, b in self.derived:
            if a not in names or b not in names:
                problems.append(f"derived {point} from unknown keypoints {a}, {b}")
        reached: set[str] = set()
        for start, end in self.limbs:
            if start not in model or end not in model:
                problems.append(f"limb ({start}, {end}) names an unknown keypoint")
            elif reached and start not in reached:
                problems.append(f"limb ({start}, {end}) starts off the walk so far")
            reached |= {start, end}
        unreached = sorted(set(model) - reached)
        if unreached:
            problems.append(f"keypoints on no limb: {unreached}")
        return problems

    # ------------------------------------------------------------------ orders and counts
    @property
    def model_order(self) -> tuple[str, ...]:
        """The head's keypoint order (see the module docstring)."""
        return self.model_keypoints or self.keypoints + tuple(d[0] for d in self.derived)

    @property
    def num_keypoints(self) -> int:
        """Keypoints per annotated person."""
        return len(self.keypoints)

    @property
    def num_model_keypoints(self) -> int:
        return len(self.model_order)

    @property
    def num_heatmaps(self) -> int:
        """Heatmap channels of the 2D head: one per model keypoint, plus the background."""
        return self.num_model_keypoints + 1

    @property
    def num_pafs(self) -> int:
        """PAF channels: limb i is channels (2i, 2i + 1), the (x, y) of its unit vector."""
        return 2 * len(self.limbs)

    @cached_property
    def sigma_array(self) -> np.ndarray:
        """(K,) float64 OKS sigmas in the annotation order (pycocotools' kpt_oks_sigmas)."""
        return np.asarray(self.sigmas, np.float64)

    # ------------------------------------------------------------------ index maps
    @cached_property
    def flip(self) -> tuple[int, ...]:
        """Annotation-order mirror permutation (TrainAugment, evaluation-time flips)."""
        return mirror_permutation(self.keypoints)

    @cached_property
    def model_flip(self) -> tuple[int, ...]:
        """Model-order mirror permutation (the flip test's heatmap channels)."""
        return mirror_permutation(self.model_order)

    @cached_property
    def limb_indices(self) -> tuple[tuple[int, int], ...]:
        """Limbs as (from, to) indices of the model order."""
        order = self.model_order
        return tuple((order.index(a), order.index(b)) for a, b in self.limbs)

    @cached_property
    def limb_flip(self) -> tuple[int, ...]:
        """Limb i of the flipped image is limb LIMB_FLIP[i] of the original (its PAF x negated)."""
        index = {limb: i for i, limb in enumerate(self.limb_indices)}
        flip = self.model_flip
        try:
            return tuple(index[(flip[a], flip[b])] for a, b in self.limb_indices)
        except KeyError as err:
            raise ValueError(f"skeleton {self.name}: the mirror of a limb is no limb") from err

    @cached_property
    def model_from_annotation(self) -> tuple[int, ...]:
        """For each model keypoint, its annotation index (-1 for derived points)."""
        return index_map(self.model_order, self.keypoints)

    @cached_property
    def annotation_from_model(self) -> tuple[int, ...]:
        """For each annotated keypoint, its model index."""
        return index_map(self.keypoints, self.model_order)

    @cached_property
    def draw_edges(self) -> tuple[tuple[int, int], ...]:
        """Drawing edges as annotation-order index pairs."""
        edges = self.draw or tuple(
            (a, b) for a, b in self.limbs if a in self.keypoints and b in self.keypoints
        )
        return tuple((self.keypoints.index(a), self.keypoints.index(b)) for a, b in edges)

    # ------------------------------------------------------------------ conversions
    def to_model(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., K, 3) annotation order (x, y, v) -> (..., M, 3) model order.

        A derived point is the midpoint of its two keypoints, labelled only when both are
        (v = the smaller of the two), as OpenPose made the neck for COCO."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if keypoints.shape[-2] != self.num_keypoints:
            raise ValueError(
                f"skeleton {self.name}: expected {self.num_keypoints} keypoints per person, "
                f"got {keypoints.shape[-2]}"
            )
        index = np.array(self.model_from_annotation)
        out = keypoints[..., np.maximum(index, 0), :].copy()
        for point, a, b in self.derived:
            first = keypoints[..., self.keypoints.index(a), :]
            second = keypoints[..., self.keypoints.index(b), :]
            both = (first[..., 2] > 0) & (second[..., 2] > 0)
            target = self.model_order.index(point)
            out[..., target, :2] = (first[..., :2] + second[..., :2]) / 2 * both[..., None]
            out[..., target, 2] = np.where(both, np.minimum(first[..., 2], second[..., 2]), 0)
        return out

    def from_model(self, people: np.ndarray) -> np.ndarray:
        """(..., M, C) model order -> (..., K, C) annotation order (derived points dropped)."""
        return np.asarray(people)[..., list(self.annotation_from_model), :]
