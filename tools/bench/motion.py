"""Stage III on synthetic motion: accuracy, smoothness, bone lengths, foot slide and fitting time.

    python -m selecsls.tools.bench.motion --sequences 4 --frames 150 --people 3

Each sequence (`datasets.synthetic_motion`) gives exact per-frame 3D joints; the inputs are those
joints with Stage II-like noise, the noise the Stage II training inputs are simulated with
(`heads.pose3d.lifting.inputs_from_ground_truth`'s defaults: 2D points + N(0, noise2d x the
person's 2D size), each 2D joint dropped with probability `drop`; the root-relative 3D pose +
N(0, noise_near) per coordinate), placed in the camera by the demo's least-squares root fit
(`place_people`). Four estimates are scored against the truth:
- raw: the noisy joints; one-euro: raw One-Euro filtered (the demo's filter, 3D parameters of
  `InputFilters`); fitted: the skeleton fitter on the raw joints; fitted+one-euro: the demo's
  Stage III (`MotionCapture`: One-Euro filtered 2D and 3D, then the fitter).
Metrics: MPJPE and PA-MPJPE (mm, root-relative, all 21 joints), acceleration error (TCMR: mean
|second difference of predicted - of true joints|, mm / frame^2, root-relative), bone-length
spread (std over frames of each bone's length, mean over bones, mm), foot slide (mean horizontal
speed in mm/s of the feet over frames where the true foot stands still on the ground) and the
fitter's time per person per frame (process CPU time, so other jobs on a shared machine do not
count).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time

import numpy as np

from selecsls.datasets.synthetic_motion import camera_to_world, make_sequence
from selecsls.heads.motion.fitter import SkeletonFitter
from selecsls.heads.motion.kinematics import PARENTS, ROOT
from selecsls.heads.pose3d.geometry import place_people
from selecsls.heads.pose3d.lifting import inputs_from_ground_truth
from selecsls.heads.pose3d.metrics import joint_errors
from selecsls.heads.skeletons import JOINTS21_NAMES
from selecsls.tools.realtime.fitting import InputFilters, MotionCapture
from selecsls.tools.realtime.tracking import OneEuroFilter

_NOISE = {k: inspect.signature(inputs_from_ground_truth).parameters[k].default
          for k in ("noise2d", "noise_near", "drop")}  # fmt: skip
FEET = [JOINTS21_NAMES.index(n) for n in ("left_foot", "right_foot")]
# A true foot stands when it is this close to the ground (mm; the lowest joint is at 30) and
# moves under 1 mm between frames.
ON_GROUND = 60.0
METHODS = ("raw", "one-euro", "fitted", "fitted+one-euro")


def noisy_inputs(person: dict, camera: dict, rng: np.random.Generator) -> tuple:
    """One person's Stage II-like (T, 21, 3) camera-mm joints and (T, 21, 3) 2D points."""
    truth, uv = person["joints"], person["points2d"]
    extent = (uv.max(1) - uv.min(1)).max(1)  # (T,) the person's 2D size per frame
    points = np.concatenate([uv, np.ones(uv.shape[:2] + (1,))], -1)
    points[..., :2] += rng.normal(size=uv.shape) * (_NOISE["noise2d"] * extent)[:, None, None]
    points[..., 2] = (rng.random(uv.shape[:2]) >= _NOISE["drop"]).astype(float)
    relative = truth - truth[:, ROOT : ROOT + 1]
    relative = relative + rng.normal(size=relative.shape) * 1000.0 * _NOISE["noise_near"]
    placed = place_people(relative, points, camera["f"], camera["c"])
    return placed, points


def accel_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """TCMR's acceleration error: mean over frames and joints of |a_pred - a_true| (mm/frame^2)
    with a = x[t+1] - 2 x[t] + x[t-1] of the root-relative joints."""

    def accel(x):
        x = x - x[:, ROOT : ROOT + 1]
        return x[2:] - 2 * x[1:-1] + x[:-2]

    return float(np.nanmean(np.linalg.norm(accel(pred) - accel(truth), axis=-1)))


def bone_spread(joints: np.ndarray) -> float:
    """Mean over bones of the std over frames of the bone's length (mm)."""
    child = np.flatnonzero(PARENTS >= 0)
    lengths = np.linalg.norm(joints[:, child] - joints[:, PARENTS[child]], axis=-1)
    return float(np.nanmean(np.nanstd(lengths, 0)))


def foot_slide(joints: np.ndarray, truth: np.ndarray, camera: dict, fps: float) -> float:
    """Mean horizontal speed (mm/s) of the feet between frames where the true foot stands."""
    world, true_world = (
        camera_to_world(joints[:, FEET], camera),
        camera_to_world(truth[:, FEET], camera),
    )
    still = np.linalg.norm((true_world[1:] - true_world[:-1])[..., [0, 2]], axis=-1) < 1.0
    both = still & (true_world[1:, :, 1] < ON_GROUND) & (true_world[:-1, :, 1] < ON_GROUND)
    step = np.linalg.norm((world[1:] - world[:-1])[..., [0, 2]], axis=-1)
    return float(step[both].mean() * fps) if both.any() else float("nan")


def run_sequence(sequence: dict, seed: int, filters: InputFilters, fitter_args: dict) -> tuple:
    """Per person {method: (T, 21, 3)} estimates, the truth, and the fitter's CPU seconds and
    person-frames."""
    rng = np.random.default_rng([seed, 7])
    camera, fps = sequence["camera"], sequence["fps"]
    inputs = {p["id"]: noisy_inputs(p, camera, rng) for p in sequence["people"]}
    estimates = {p["id"]: {m: [] for m in METHODS} for p in sequence["people"]}
    plain = SkeletonFitter(**fitter_args)
    capture = MotionCapture(SkeletonFitter(**fitter_args), filters, fps=fps)
    euro = {
        i: OneEuroFilter(filters.min_cutoff_3d, filters.beta_3d, filters.d_cutoff) for i in inputs
    }
    seconds, count = 0.0, 0
    for t in range(sequence["frames"]):
        live = [p for p in sequence["people"] if p["first"] <= t <= p["last"]]
        ids = [p["id"] for p in live]
        joints = np.array([inputs[i][0][t - p["first"]] for i, p in zip(ids, live)]).reshape(
            -1, 21, 3
        )
        points = np.array([inputs[i][1][t - p["first"]] for i, p in zip(ids, live)]).reshape(
            -1, 21, 3
        )
        start = time.process_time()
        fitted = plain.update(ids, joints, points2d=points, f=camera["f"], c=camera["c"]).joints
        seconds += time.process_time() - start
        count += len(ids)
        both = capture.update(ids, joints, points, camera["f"], camera["c"], t / fps)[
            "result"
        ].joints
        for k, i in enumerate(ids):
            found = np.isfinite(joints[k]).all(1)
            smooth = euro[i](np.nan_to_num(joints[k]), t / fps, found)
            for method, value in zip(METHODS, (joints[k], smooth, fitted[k], both[k])):
                estimates[i][method].append(value)
    truth = {p["id"]: p["joints"] for p in sequence["people"]}
    return estimates, truth, seconds, count


def score(estimates: dict, truth: dict, camera: dict, fps: float) -> dict:
    """{method: {metric: value}} averaged over the people (weighted by their frames)."""
    out = {}
    for method in ("truth", *METHODS):  # the truth's own foot slide is the reference
        rows, weights = [], []
        for i, by_method in estimates.items():
            gt = truth[i]
            pred = gt if method == "truth" else np.array(by_method[method])
            rows.append([
                float(np.nanmean(joint_errors(pred, gt, "root"))),
                float(np.nanmean(joint_errors(pred, gt, "procrustes"))),
                accel_error(pred, gt), bone_spread(pred), foot_slide(pred, gt, camera, fps),
            ])  # fmt: skip
            weights.append(len(gt))
        values = np.average(np.array(rows), axis=0, weights=weights)
        out[method] = dict(zip(("mpjpe", "pa_mpjpe", "accel", "bone_std", "foot_slide"), values))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--people", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rescale-frames", type=int, default=10, help="frames that measure the bones")
    args = p.parse_args(argv)
    filters = InputFilters()
    totals, seconds, count, frames = {}, 0.0, 0, 0
    for s in range(args.sequences):
        sequence = make_sequence(args.seed + s, args.frames, people=args.people)
        estimates, truth, sec, n = run_sequence(
            sequence, args.seed + s, filters, {"rescale_frames": args.rescale_frames}
        )
        weight = sum(len(v) for v in truth.values())
        for method, metrics in score(estimates, truth, sequence["camera"], sequence["fps"]).items():
            for key, value in metrics.items():
                totals.setdefault(method, {}).setdefault(key, 0.0)
                totals[method][key] += value * weight
        frames += weight
        seconds, count = seconds + sec, count + n
    print(f"{args.sequences} sequences x {args.frames} frames, up to {args.people} people "
          f"({frames} person-frames); noise: 3D {1000 * _NOISE['noise_near']:.0f} mm per "
          f"coordinate, 2D {100 * _NOISE['noise2d']:.0f}% of the person's size, "
          f"{100 * _NOISE['drop']:.0f}% of 2D joints dropped")  # fmt: skip
    print(
        "| estimate | MPJPE mm | PA-MPJPE mm | accel error mm/frame^2 | bone-length std mm "
        "| foot slide mm/s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for method, metrics in totals.items():
        m = {k: v / frames for k, v in metrics.items()}
        print(f"| {method} | {m['mpjpe']:.1f} | {m['pa_mpjpe']:.1f} | {m['accel']:.1f} | "
              f"{m['bone_std']:.1f} | {m['foot_slide']:.0f} |")  # fmt: skip
    print(
        f"fitting time: {1e3 * seconds / max(count, 1):.2f} ms per person per frame "
        f"(process CPU time, {count} person-frames)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
