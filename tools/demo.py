"""Real-time multi-person pose demo on a camera, a video file or a folder of images.

    python -m selecsls.tools.demo --checkpoint runs/pose/best.pt --input 0
    python -m selecsls.tools.demo --checkpoint runs/pose/best.pt --input clip.mp4 \\
        --output annotated.mp4 --json people.json
    python -m selecsls.tools.demo --checkpoint runs/pose/best.pt --input 0 --precision int8
    python -m selecsls.tools.demo --checkpoint pose.onnx --backend onnxruntime --input frames/
    python -m selecsls.tools.demo --checkpoint stage2.onnx --backend onnxruntime \
        --lifting runs/lifting/best.pt --input 0

Each frame is letterboxed to --input-size, run through the network (PyTorch in its fastest mode
on the device: BN folded, channels_last, bf16 on CPUs with AMX/AVX-512 BF16, fp16 on CUDA, and
with --compile torch.compile'd; --precision int8 a post-training int8 copy, the fastest on a CPU;
or onnxruntime), decoded into people, tracked (stable ids),
smoothed (One-Euro) and drawn with an FPS counter (and a 3D view when the network predicts 3D:
XNect Stage II lifting when the checkpoint has it, else the Stage I location-map read-out; see
tools/demo_pose3d.py).

With a display: a window; keys q / Esc quit, space pauses. Without one (or with --headless):
--output writes the annotated video, --json the people of every frame. An unreadable frame is
skipped, the end of a file or a camera that stops ends the run cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from selecsls.heads.skeletons import COCO17_NAMES
from selecsls.tools._cli import parse_size, run_cli
from selecsls.tools.demo_draw import compose, draw_fps, draw_people, draw_pose3d_panel
from selecsls.tools.demo_loading import (
    DEMO_PRECISIONS,
    load_onnx_estimator,
    load_torch_estimator,
)
from selecsls.tools.demo_outputs import VideoOutput, check_output_paths, person_record, write_json
from selecsls.tools.demo_pose3d import SOURCE_LABELS
from selecsls.tools.demo_runtime import Inference, PoseEstimator
from selecsls.tools.demo_sources import Frame, FrameSource, ReadAhead, open_source, read_frames
from selecsls.tools.demo_tracking import Tracker

BACKENDS = ("pytorch", "onnxruntime")


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


def annotate(frame: np.ndarray, people: list[dict], prediction, fps: float, panel_width: int):
    """The frame with skeletons, ids, FPS and (for a 3D model) the 3D panel beside it."""
    canvas = draw_people(frame.copy(), people)
    source = getattr(prediction, "pose3d_source", None)
    label = SOURCE_LABELS.get(source, f"3D: {source}") if source else ""
    draw_fps(canvas, fps, f"{len(people)} people  {label}")
    if prediction.poses3d is None:
        return canvas
    poses = [(p["id"], prediction.poses3d[p["index"]]) for p in people]
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


def step(
    frame: Frame,
    inference: Inference,
    estimator: PoseEstimator,
    tracker: Tracker,
    fps: float,
    panel_width: int,
) -> tuple[np.ndarray, dict, dict[str, float]]:
    """One frame and its network outputs -> (annotated image, JSON record, stage times in ms)."""
    prediction = estimator.finish(inference)
    people = tracker.update(prediction.keypoints, prediction.scores, frame.time)
    canvas = annotate(frame.image, people, prediction, fps, panel_width)
    record = {
        "frame": frame.index,
        "time": round(frame.time, 4),
        "people": [
            person_record(p, prediction.poses3d, prediction.poses3d_relative) for p in people
        ],
    }
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
                    frame, inference, estimator, tracker, meter.tick(), width
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
    elapsed = time.perf_counter() - start
    summary = {
        "frames": count,
        "skipped": source.skipped,
        "fps": count / max(elapsed, 1e-9),
        "ms": {k: v / max(count, 1) for k, v in totals.items()},
    }
    if options.json_path:
        write_json(options.json_path, {
            "source": source.name,
            "input_size": list(estimator.input_size),
            "keypoint_names": list(COCO17_NAMES),
            "frame_count": count,
            "skipped": source.skipped,
            "pose3d_source": estimator.pose3d_source,
            "frames": frames_json,
        })  # fmt: skip
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="selecsls.tools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="pose checkpoint (.pt) or exported .onnx")
    p.add_argument("--input", required=True, help="camera index, video file, image or folder")
    p.add_argument("--backend", default="pytorch", help=f"one of {', '.join(BACKENDS)}")
    p.add_argument("--input-size", default=None, help="network input WxH (default 512x320)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (pytorch)")
    p.add_argument(
        "--precision",
        default="auto",
        help=f"one of {', '.join(DEMO_PRECISIONS)}; auto: bf16 on CPUs with AMX/AVX-512 BF16, "
        "fp16 on CUDA, else fp32; int8: CPU, post-training quantized (about 2x bf16's speed on "
        "AMX, no faster than fp32 on an AVX2-only CPU)",
    )
    p.add_argument(
        "--calibration",
        help="int8: calibrate on the images of this folder before the first frame (default: "
        "on the input's first 16 frames, which run in bf16/fp32 meanwhile)",
    )
    p.add_argument("--output", help="write the annotated video here (.mp4 / .avi)")
    p.add_argument("--json", dest="json_path", help="write the people of every frame here")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--fps", type=float, help="frame rate of an image folder (default 30)")
    p.add_argument("--no-smooth", action="store_true", help="draw raw keypoints (no One-Euro)")
    p.add_argument("--min-cutoff", type=float, default=1.0, help="One-Euro cutoff at rest (Hz)")
    p.add_argument("--beta", type=float, default=0.02, help="One-Euro speed coefficient")
    p.add_argument("--threads", type=int, help="CPU threads for the network")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (pytorch backend): the fastest CPU mode, after a "
        "7-60 s compile at start-up; falls back to uncompiled if compiling fails",
    )
    p.add_argument(
        "--pipeline",
        default="auto",
        choices=("auto", "on", "off"),
        help="on: the network works on the next frame in a thread while the last one is "
        "decoded and drawn; off: one after the other; auto (default): on with a GPU or 4+ CPUs",
    )
    p.add_argument(
        "--lifting",
        help="checkpoint whose Stage II (lifting head) lifts the 3D poses: needed with an ONNX "
        "file (it holds Stage I only); default: the checkpoint's own lifting head, if any",
    )
    return p.parse_args(argv)


def busy_machine_hint() -> None:
    """On a machine whose other jobs already fill the cores, several intra-op threads spin-wait on
    each other (measured here: 2 threads 30x slower than 1 at load 4 on 2 cores); say so."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cores > 1 and load >= cores:
        print(
            f"note: the machine is busy (load {load:.1f} on {cores} cores); "
            "--threads 1 is likely much faster",
            file=sys.stderr,
        )


def use_pipeline(choice: str, estimator: PoseEstimator) -> bool:
    """Whether the network runs in its own thread. "auto": with a GPU (the host work then
    overlaps the GPU's) or 4+ logical CPUs. On 2 vCPUs that share a physical core the host work
    beside it slows the CPU network: measured on this project's 2-vCPU machine, 0.8-0.9x when
    it was otherwise idle, 1.1-1.2x when it was loaded (docs/demo.md)."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"unknown --pipeline {choice!r}; valid: auto, on, off")
    if choice != "auto":
        return choice == "on"
    device = getattr(estimator.runner, "device", None)
    on_gpu = getattr(device, "type", "cpu") == "cuda" or "CUDA" in estimator.runner.description
    return on_gpu or (os.cpu_count() or 1) >= 4


def build_estimator(args: argparse.Namespace) -> PoseEstimator:
    if args.backend not in BACKENDS:
        raise ValueError(f"unknown backend {args.backend!r}; valid: {', '.join(BACKENDS)}")
    size = parse_size(args.input_size) if args.input_size else None
    if args.backend == "onnxruntime":
        if args.compile:
            raise ValueError("--compile is for the pytorch backend (onnxruntime optimises itself)")
        if args.precision == "int8" or args.calibration:
            raise ValueError("--precision int8 (and --calibration) are for the pytorch backend")
        return load_onnx_estimator(args.checkpoint, size, args.lifting)
    estimator = load_torch_estimator(
        args.checkpoint,
        size or (512, 320),
        args.device,
        args.precision,
        args.lifting,
        args.compile,
        args.calibration,
    )
    if args.compile:
        print(f"compiling the network for {'x'.join(map(str, estimator.input_size))} ...")
        seconds = estimator.runner.warm_up(estimator.input_size)
        print(f"ready in {seconds:.1f} s ({estimator.runner.description})")
    return estimator


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        busy_machine_hint()
    show = not args.headless and has_display()
    if not show and not (args.output or args.json_path):
        raise ValueError("no display here: give --output VIDEO and/or --json FILE (headless mode)")
    check_output_paths(args.output, args.json_path)  # fail fast, before loading anything
    source = open_source(args.input, args.fps)
    try:
        estimator = build_estimator(args)
    except BaseException:
        source.close()
        raise
    tracker = Tracker(smoothing=not args.no_smooth, min_cutoff=args.min_cutoff, beta=args.beta)
    options = Options(args.output, args.json_path, show, args.max_frames)
    options.pipeline = use_pipeline(args.pipeline, estimator)
    size = "x".join(map(str, estimator.input_size))
    print(
        f"{source.name} -> {estimator.runner.description}, input {size}, "
        f"3D: {estimator.pose3d_description}, network thread: {'on' if options.pipeline else 'off'}"
    )
    summary = run(estimator, source, tracker, options)
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in summary["ms"].items())
    print(
        f"{summary['frames']} frames ({summary['skipped']} unreadable skipped), "
        f"{summary['fps']:.1f} fps end to end; per frame: {stages}"
    )
    for label, path in (("video", args.output), ("json", args.json_path)):
        if path:
            print(f"wrote {label} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
