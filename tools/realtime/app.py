"""The demo's frame loop: read, infer, track, draw, then show and/or write each frame.

`run(estimator, source, tracker, options)` is what `python -m selecsls.tools.demo` drives and
what `python -m selecsls.tools.bench.demo` times. With `Options.pipeline` the network runs in its
own thread, one frame ahead of decoding and drawing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from selecsls.heads.skeletons import COCO17, JOINTS21_NAMES, Skeleton
from selecsls.tools.realtime.fitting import ANGLE_NAMES, MotionCapture, skeleton_json
from selecsls.tools.realtime.outputs import (
    VideoOutput,
    person_record,
    write_json,
)
from selecsls.tools.realtime.pose3d import SOURCE_LABELS
from selecsls.tools.realtime.runtime import Inference, PoseEstimator
from selecsls.tools.realtime.sources import Frame, FrameSource, ReadAhead, read_frames
from selecsls.tools.realtime.tracking import Tracker
from selecsls.tools.visualization.draw import compose, draw_fps, draw_people, draw_pose3d_panel


@dataclass
class Options:
    """What to do with the processed frames (the CLI's output flags)."""

    output: str | None = None
    json_path: str | None = None
    show: bool = False
    max_frames: int | None = None
    panel3d_width: int | None = None  # default: the frame height (a square panel)
    paused: bool = False
    pipeline: bool = True  # network in its own thread, overlapping decode/draw of the last frame
    motion: MotionCapture | None = None  # Stage III skeleton fitting (--fit, --bvh)


def has_display() -> bool:
    """A window can open: a display server is named (Linux) or the OS is not Linux."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class FpsMeter:
    """Frames per second over a sliding window of recent frames."""

    def __init__(self, window: int = 30) -> None:
        self.stamps: list[float] = []
        self.window = window

    def tick(self) -> float:
        self.stamps = (self.stamps + [time.perf_counter()])[-self.window :]
        if len(self.stamps) < 2:
            return 0.0
        return (len(self.stamps) - 1) / max(self.stamps[-1] - self.stamps[0], 1e-9)


def annotate(
    frame: np.ndarray,
    people: list[dict],
    prediction,
    fps: float,
    panel_width: int,
    fitted: dict | None = None,
    limbs: tuple[tuple[int, int], ...] | None = None,
):
    """The frame with skeletons, ids, FPS and (for a 3D model) the 3D panel beside it, showing
    the fitted skeletons (`fitted`: id -> {"joints"}) where fitting is on."""
    canvas = draw_people(frame.copy(), people, limbs)
    source = getattr(prediction, "pose3d_source", None)
    label = SOURCE_LABELS.get(source, f"3D: {source}") if source else ""
    draw_fps(canvas, fps, f"{len(people)} people  {label}")
    if prediction.poses3d is None:
        return canvas
    poses = [(p["id"], prediction.poses3d[p["index"]]) for p in people]
    if fitted is not None:
        poses = [(i, fitted[i]["joints"] if i in fitted else pose) for i, pose in poses]
        label = f"{label or '3D'} + skeleton fit"
    panel = draw_pose3d_panel(poses, (panel_width, frame.shape[0]), title=label or "3D")
    return compose(canvas, panel)


def wait_keys(paused: bool) -> tuple[bool, bool]:
    """Handle window keys -> (quit, paused). While paused, block until space or quit."""
    while True:
        key = cv2.waitKey(0 if paused else 1) & 0xFF
        if key in (ord("q"), 27):
            return True, paused
        if key == ord(" "):
            paused = not paused
        if not paused:
            return False, paused


def show_frame(canvas: np.ndarray, options: Options) -> bool:
    """Show the frame and handle keys; False when the user quits. An OpenCV without GUI support
    (opencv-python-headless) turns the run headless instead of failing."""
    try:
        cv2.imshow("selecsls demo", canvas)
    except cv2.error:
        print("warning: this OpenCV cannot open windows; continuing headless", file=sys.stderr)
        options.show = False
        return True
    quit_now, options.paused = wait_keys(options.paused)
    return not quit_now


def infer_frames(
    frames: Iterator[Frame], estimator: PoseEstimator, pipeline: bool
) -> tuple[Iterator[tuple[Frame, Inference]], Callable[[], None]]:
    """((frame, network outputs) iterator, stop function). With `pipeline` the network runs in a
    background thread one frame ahead: while the main thread decodes, tracks, draws and shows
    frame t, the network already works on frame t+1 (torch releases the GIL), so a frame costs
    max(network, the rest) instead of their sum on a machine with a second core."""
    if not pipeline:
        return ((frame, estimator.infer(frame.image)) for frame in frames), lambda: None
    worker = ReadAhead(inferred_in_thread(frames, estimator), live=False, depth=1)
    return iter(worker), worker.stop


def inferred_in_thread(frames: Iterator[Frame], estimator: PoseEstimator):
    """(frame, network outputs) pairs, for a generator that runs in a new thread. OpenMP keeps its
    thread count per thread: a new thread starts with every core until some aten op happens to
    apply torch's setting, and a convolution run before that used all cores whatever --threads
    said (measured here: 2 threads, twice the CPU time per wall second). Set it first."""
    torch.set_num_threads(torch.get_num_threads())  # torch's count is global, OpenMP's is not
    for frame in frames:
        yield frame, estimator.infer(frame.image)


def skeleton_of(estimator: Any) -> Skeleton:
    """The 2D skeleton an estimator's people are in (its codec's; COCO-17 without one)."""
    codec = getattr(estimator, "codec", None)
    return codec.keypoint_skeleton if codec is not None else COCO17


def step(
    frame: Frame,
    inference: Inference,
    estimator: PoseEstimator,
    tracker: Tracker,
    fps: float,
    panel_width: int,
    motion: MotionCapture | None = None,
) -> tuple[np.ndarray, dict, dict[str, float]]:
    """One frame and its network outputs -> (annotated image, JSON record, stage times in ms).
    With `motion`, each person's skeleton is fitted too (record "skeleton", the 3D panel)."""
    prediction = estimator.finish(inference)
    people = tracker.update(prediction.keypoints, prediction.scores, frame.time)
    fitted = None
    if motion is not None:
        start = time.perf_counter()
        live = [track.track_id for track in tracker.tracks]
        fitted = motion.fit_frame(people, prediction, frame.image.shape, frame.time, live)
        prediction.times["fit"] = 1e3 * (time.perf_counter() - start)
    edges = skeleton_of(estimator).draw_edges
    canvas = annotate(frame.image, people, prediction, fps, panel_width, fitted, edges)
    records = [person_record(p, prediction.poses3d, prediction.poses3d_relative) for p in people]
    for person, entry in zip(people, records):
        if fitted and person["id"] in fitted:
            entry["skeleton"] = skeleton_json(fitted[person["id"]])
    record = {"frame": frame.index, "time": round(frame.time, 4), "people": records}
    return canvas, record, prediction.times


def run(estimator: PoseEstimator, source: FrameSource, tracker: Tracker, options: Options) -> dict:
    """Process every frame of `source`; returns a summary (frames, skipped, fps, stage ms)."""
    video = VideoOutput(options.output, source.fps) if options.output else None
    frames_json: list[dict] = []
    frames, stop_reading = read_frames(source)
    inferred, stop_inference = infer_frames(frames, estimator, options.pipeline)
    meter, count, totals = FpsMeter(), 0, {}
    start, finished = time.perf_counter(), False
    try:
        try:
            for frame, inference in inferred:
                width = options.panel3d_width or frame.image.shape[0]
                canvas, record, times = step(
                    frame, inference, estimator, tracker, meter.tick(), width, options.motion
                )
                frames_json.append(record)
                if video is not None:
                    video.write(canvas)
                for key, value in times.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
                if options.show and not show_frame(canvas, options):
                    break
                if options.max_frames and count >= options.max_frames:
                    break
        except KeyboardInterrupt:  # Ctrl-C ends the run like the quit key: outputs are kept
            print("interrupted: keeping the frames processed so far", file=sys.stderr)
        finished = True
    finally:
        stop_inference()  # before the reader: the inference thread pulls from it
        stop_reading()
        source.close()
        if video is not None:
            video.finish(keep=finished or count > 0)
        if options.show:
            cv2.destroyAllWindows()
    bvh_files = options.motion.finish() if options.motion is not None else []
    elapsed = time.perf_counter() - start
    summary = {
        "frames": count,
        "skipped": source.skipped,
        "fps": count / max(elapsed, 1e-9),
        "ms": {k: v / max(count, 1) for k, v in totals.items()},
        "bvh": [str(p) for p in bvh_files],
    }
    if options.json_path:
        payload = {
            "source": source.name,
            "input_size": list(estimator.input_size),
            "keypoint_names": list(skeleton_of(estimator).keypoints),
            "frame_count": count,
            "skipped": source.skipped,
            "pose3d_source": estimator.pose3d_source,
            "frames": frames_json,
        }
        if options.motion is not None:  # how to read each person's "skeleton"
            payload["skeleton"] = {
                "joint_names": list(JOINTS21_NAMES),
                "angle_joints": list(ANGLE_NAMES),
                "angle_order": "ZXY: [z, x, y] degrees, R = Rz Rx Ry, Y-up (as the BVH files)",
            }
        write_json(options.json_path, payload)
    return summary
