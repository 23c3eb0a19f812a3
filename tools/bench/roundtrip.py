"""The 2D codec's round trip on the real samples of every keypoint format, and where people go.

For each shared sample set (COCO, CrowdPose, PoseTrack18, Human-Art, MPII) with its own skeleton:
encode the ground truth at an evaluation geometry, decode, map back to original pixels and score
with the dataset's metric (OKS AP; CrowdPose's official AP; MPII's PCKh@0.5 beside AP).
Geometries: letterboxes (EvalResize to each of --sizes) and the references' (EvalScale: height
--reference-height, padded to 16, lightweight OpenPose's). A markdown table goes to stdout;
--diagnose adds where the round trip loses people:

    python -m selecsls.tools.bench.roundtrip
    python -m selecsls.tools.bench.roundtrip --diagnose --sets crowdpose humanart
    python -m selecsls.tools.bench.roundtrip --paf-min-length 1     # an opt-in codec setting
    python -m selecsls.tools.bench.roundtrip --head centre2d        # the centre + offset codec

Diagnosis, per ground-truth person and in map cells (counted, not guessed):
- `merged`: labelled joints with no peak of their own (no peak within DIAGNOSE_RADIUS cells, or
  the nearest one is nearer another person's joint of that type): nearby same-type joints merged;
- `paf_lost`: ground-truth limbs whose two own peaks the limb scoring rejects (crossing limbs'
  PAFs overwrote each other, or the band was cut short);
- `chains`: people whose labelled joints fall apart into several pieces along the skeleton's
  limbs (a joint on the walk is unlabelled: no PAF can connect the pieces);
- `split`: people whose own peaks the grouping put into more than one decoded person.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selecsls.datasets.augment import EvalResize, EvalScale
from selecsls.datasets.coco import CocoKeypoints
from selecsls.datasets.keypoint_formats import get_format, open_keypoint_dataset
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.crowdpose_metrics import crowdpose_ap
from selecsls.heads.pose2d.grouping import group_people, score_pairs
from selecsls.heads.pose2d.metrics import evaluate_keypoints, people_to_results
from selecsls.heads.pose2d.peaks import find_peaks
from selecsls.heads.pose2d.registry import HEADS_2D, make_codec2d
from selecsls.tools._cli import parse_size, run_cli
from selecsls.tools.engine.tasks.pose2d_metrics import pckh_of_results, subset

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
POSE = DATA / "pose_samples"
# a joint's own peak lies within this many map cells (sub-cell refinement is exact on the
# encoded Gaussians, so anything farther is another joint's peak or a merged one)
DIAGNOSE_RADIUS = 1.0


@dataclass(frozen=True)
class SampleSet:
    """One shared sample set: its format (loader, skeleton, metric), json and image folder."""

    name: str
    format: str
    json: Path
    images: Path

    @property
    def present(self) -> bool:
        return self.json.is_file() and self.images.is_dir()


SAMPLE_SETS: dict[str, SampleSet] = {
    s.name: s
    for s in (
        SampleSet("coco", "coco", DATA / "coco_sample/person_keypoints_sample.json",
                  DATA / "coco_sample"),
        SampleSet("crowdpose", "crowdpose", POSE / "crowdpose/test_crowdpose.json",
                  POSE / "crowdpose"),
        SampleSet("posetrack18", "posetrack18",
                  POSE / "posetrack18/annotations/test_posetrack18_val.json", POSE / "posetrack18"),
        SampleSet("humanart", "humanart", POSE / "humanart/test_humanart.json", POSE / "humanart"),
        SampleSet("mpii", "mpii", POSE / "mpii/test_mpii.json", POSE / "mpii"),
    )
}  # fmt: skip


def geometries(sizes: list[tuple[int, int]], reference_height: int) -> dict[str, EvalResize]:
    """{label: eval augment}: the fixed letterboxes and the references' per-image scaling."""
    out: dict[str, EvalResize] = {f"letterbox {w}x{h}": EvalResize((w, h)) for w, h in sizes}
    out[f"height {reference_height}"] = EvalScale(reference_height, 16, "height")
    return out


def skeleton_of(sample: SampleSet) -> str:
    """The skeleton name a sample set's format loads with (its default)."""
    return get_format(sample.format).skeleton


def open_sample(sample: SampleSet, codec: Pose2DCodec, augment: EvalResize) -> CocoKeypoints:
    """The sample set's dataset at one geometry, encoding targets with `codec`."""
    return open_keypoint_dataset(
        sample.format,
        sample.json,
        sample.images,
        input_size=augment.input_size,
        augment=augment,
        encoder=codec.encode,
        normalize=False,
    )


@dataclass
class RoundTrip:
    """One sample set at one geometry: the metric, people counts and the diagnosis."""

    metric: dict[str, float]
    people_gt: int = 0
    people_decoded: int = 0
    seconds: float = 0.0
    causes: dict[str, int] = field(default_factory=dict)


def samples_of(dataset: CocoKeypoints) -> Iterator[dict]:
    """Every item of the dataset: image, keypoints (P, K, 3) input pixels, encoded targets."""
    for index in range(len(dataset)):
        yield dataset[index]


def round_trip(
    sample: SampleSet, codec: Pose2DCodec, augment: EvalResize, diagnose: bool = False
) -> RoundTrip:
    """Encode every image's ground truth, decode, map back, score by the format's metric
    (`codec`: either 2D head's; `diagnose` counts the PAF codec's losses)."""
    dataset = open_sample(sample, codec, augment)
    results: list[dict] = []
    trip = RoundTrip(metric={}, causes=dict.fromkeys(CAUSES, 0))
    start = time.process_time()
    for item in samples_of(dataset):
        outputs = {key: item[key].numpy() for key in codec.output_keys}
        keypoints, scores = codec.decode_outputs(outputs, item["transform"].numpy())
        results += people_to_results(item["image_id"], keypoints, scores)
        truth = item["keypoints"].numpy()
        trip.people_gt += int((truth[..., 2] > 0).any(-1).sum())
        trip.people_decoded += len(keypoints)
        if diagnose:
            found = diagnose_image(codec, truth, outputs["heatmaps"], outputs["pafs"])
            for cause, count in found.items():
                trip.causes[cause] += count
    trip.seconds = time.process_time() - start
    trip.metric = score(sample, dataset, codec, results)
    return trip


def score(
    sample: SampleSet, dataset: CocoKeypoints, codec: Pose2DCodec, results: list[dict]
) -> dict[str, float]:
    """{"AP": ..., ["PCKh": ...]} by the format's own metric, as tools/eval.py scores it."""
    sigmas = codec.keypoint_skeleton.sigma_array
    if sample.format == "crowdpose":
        return {"AP": crowdpose_ap(subset(dataset.coco, dataset.image_ids), results, sigmas)["AP"]}
    stats = evaluate_keypoints(
        dataset.scoring_ground_truth(),
        results,
        sigmas=sigmas,
        image_ids=dataset.image_ids,
        verbose=False,
    )
    metric = {"AP": stats["AP"]}
    if sample.format == "mpii":
        count = codec.keypoint_skeleton.num_keypoints
        metric["PCKh"] = pckh_of_results(dataset.coco, dataset.image_ids, results, count)["Mean"]
    return metric


# ---------------------------------------------------------------------- diagnosis
CAUSES = ("merged", "paf_lost", "chains", "split")


def diagnose_image(
    codec: Pose2DCodec, truth: np.ndarray, heatmaps: np.ndarray, pafs: np.ndarray
) -> dict[str, int]:
    """Counts of CAUSES for one image. truth: (P, K, 3) annotation order, input pixels;
    heatmaps (M + 1, h, w), pafs (2L, h, w): the encoded targets."""
    skeleton = codec.keypoint_skeleton
    people = skeleton.to_model(truth)  # (P, M, 3)
    cells = (people[..., :2] - (codec.stride - 1) / 2) / codec.stride
    labelled = people[..., 2] > 0
    peaks = find_peaks(heatmaps[: codec.num_keypoints], codec.peak_threshold, codec.max_peaks)
    own = own_peaks(cells, labelled, peaks)  # (P, M) peak index or -1
    found, _ = group_people(peaks, pafs, codec.limbs, **codec.grouping_options())
    owner = peak_owner(found, peaks)
    counts = dict.fromkeys(CAUSES, 0)
    counts["merged"] = int((labelled & (own < 0)).sum())
    counts["paf_lost"] = rejected_limbs(codec, own, peaks, pafs)
    for person in range(len(people)):
        if not labelled[person].any():
            continue
        counts["chains"] += int(pieces(codec.limbs, labelled[person]) > 1)
        mine = own[person][own[person] >= 0]
        counts["split"] += int(len({int(owner[p]) for p in mine if owner[p] >= 0}) > 1)
    return counts


def own_peaks(cells: np.ndarray, labelled: np.ndarray, peaks) -> np.ndarray:
    """(P, M) the index of each labelled joint's own peak, -1 where it has none: the nearest
    peak of its type within DIAGNOSE_RADIUS that no other person's joint of the type is
    nearer to. cells: (P, M, 2) map coordinates; labelled: (P, M)."""
    own = np.full(labelled.shape, -1, np.int64)
    for kind in range(labelled.shape[1]):
        ids = np.flatnonzero(peaks.kind == kind)
        who = np.flatnonzero(labelled[:, kind])
        if not len(ids) or not len(who):
            continue
        distance = np.linalg.norm(cells[who, kind, None] - peaks.xy[ids][None], axis=-1)
        nearest = distance.argmin(1)
        closest_joint = distance.argmin(0)  # per peak, the joint nearest to it
        for row, person in enumerate(who):
            column = nearest[row]
            if distance[row, column] <= DIAGNOSE_RADIUS and closest_joint[column] == row:
                own[person, kind] = ids[column]
    return own


def rejected_limbs(codec: Pose2DCodec, own: np.ndarray, peaks, pafs: np.ndarray) -> int:
    """Ground-truth limbs with both own peaks whose pair the limb scoring rejects."""
    limbs = np.array(codec.limbs)  # (L, 2)
    start, end = own[:, limbs[:, 0]], own[:, limbs[:, 1]]  # (P, L)
    both = (start >= 0) & (end >= 0)
    if not both.any():
        return 0
    limb = np.nonzero(both)[1]
    a, b = start[both], end[both]
    options = codec.grouping_options()
    value, ratio = score_pairs(
        peaks.xy[a],
        peaks.xy[b],
        limb,
        pafs,
        options["samples"],
        options["min_score"],
        options["min_length"],
    )
    return int(((ratio <= options["min_ratio"]) | (value <= 0)).sum())


def peak_owner(found: np.ndarray, peaks) -> np.ndarray:
    """(N,) the decoded person holding each peak, -1 for none. found: (P, M, 3) map cells."""
    owner = np.full(len(peaks.kind), -1, np.int64)
    for person, joints in enumerate(found):
        for kind in np.flatnonzero(joints[:, 2] > 0):
            same = np.flatnonzero(
                (peaks.kind == kind) & (np.abs(peaks.xy - joints[kind, :2]).sum(1) < 1e-4)
            )
            owner[same] = person
    return owner


def pieces(limbs: tuple[tuple[int, int], ...], labelled: np.ndarray) -> int:
    """Connected pieces of a person's labelled joints (M,) along limbs with both ends labelled."""
    parent = list(range(len(labelled)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in limbs:
        if labelled[a] and labelled[b]:
            parent[root(a)] = root(b)
    return len({root(i) for i in np.flatnonzero(labelled)})


# ---------------------------------------------------------------------- table
def table(rows: list[tuple[str, str, RoundTrip]], diagnose: bool) -> str:
    """Markdown: one row per (sample set, geometry)."""
    head = "| set | geometry | metric | people GT | decoded | CPU s |"
    rule = "|---|---|---|---:|---:|---:|"
    if diagnose:
        head += " merged joints | PAF-rejected limbs | broken chains | split people |"
        rule += "---:|---:|---:|---:|"
    lines = [head, rule]
    for name, geometry, trip in rows:
        metric = ", ".join(f"{k} {v:.3f}" if k == "AP" else f"{k} {v:.1f}"
                           for k, v in trip.metric.items())  # fmt: skip
        line = (
            f"| {name} | {geometry} | {metric} | {trip.people_gt} | {trip.people_decoded} "
            f"| {trip.seconds:.1f} |"
        )
        if diagnose:
            line += "".join(f" {trip.causes[c]} |" for c in CAUSES)
        lines.append(line)
    return "\n".join(lines)


def run(
    sets: list[str],
    sizes: list[tuple[int, int]],
    reference_height: int,
    diagnose: bool,
    make_codec: Callable[[str], Pose2DCodec] = lambda skeleton: Pose2DCodec(skeleton=skeleton),
) -> list[tuple[str, str, RoundTrip]]:
    """Every (present) sample set of `sets` at both geometries."""
    rows = []
    for name in sets:
        sample = SAMPLE_SETS[name]
        if not sample.present:
            print(f"(skipping {name}: {sample.json} not found)")
            continue
        codec = make_codec(skeleton_of(sample))
        for label, augment in geometries(sizes, reference_height).items():
            rows.append((name, label, round_trip(sample, codec, augment, diagnose)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sets", nargs="+", default=list(SAMPLE_SETS), choices=list(SAMPLE_SETS),
        help="sample sets to run (default: all that are present)",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", default=[(512, 320), (368, 368), (256, 256)],
        help="letterbox input sizes WxH",
    )  # fmt: skip
    parser.add_argument("--reference-height", type=int, default=368, help="EvalScale height")
    parser.add_argument("--diagnose", action="store_true", help="count where people are lost")
    parser.add_argument(
        "--paf-min-length", type=float, default=Pose2DCodec.paf_min_length,
        help="codec paf_min_length: limb candidates shorter (cells) are scored by the field's norm",
    )  # fmt: skip
    parser.add_argument(
        "--head", default="xnect2d", choices=list(HEADS_2D),
        help="whose codec: xnect2d (heatmaps + PAFs) or centre2d (centres + offsets)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.diagnose and args.head != "xnect2d":
        raise ValueError("--diagnose counts the PAF grouping's losses: use it with --head xnect2d")

    def make_codec(skeleton: str) -> Any:
        settings = {"skeleton": skeleton, "paf_min_length": args.paf_min_length}
        return make_codec2d(args.head, settings)

    rows = run(args.sets, args.sizes, args.reference_height, args.diagnose, make_codec)
    print(table(rows, args.diagnose))
    return 0


def cli() -> int:
    """The console entry: user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
