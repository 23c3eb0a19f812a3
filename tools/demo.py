"""Real-time multi-person pose demo on a camera, a video file or a folder of images.

    python -m selecsls.tools.demo --checkpoint runs/pose/best.pt --input 0
    python -m selecsls.tools.demo --checkpoint runs/pose/best.pt --input clip.mp4 \\
        --output annotated.mp4 --json people.json
    python -m selecsls.tools.demo --checkpoint runs/pose/best.pt --input 0 --precision int8
    python -m selecsls.tools.demo --checkpoint pose.onnx --backend onnxruntime --input frames/
    python -m selecsls.tools.demo --checkpoint stage2.onnx --backend onnxruntime \
        --lifting runs/lifting/best.pt --input 0
    python -m selecsls.tools.demo --checkpoint runs/pose3d/best.pt --input clip.mp4 \
        --json people.json --bvh bvh/   # Stage III: skeletons, joint angles, one BVH per person

Each frame is letterboxed to --input-size, run through the network (PyTorch in its fastest mode
on the device: BN folded, channels_last, fp16 on CUDA; on a CPU the fastest of fp32, bf16 and
a post-training int8 copy, measured once for the model and input size and cached; with
--compile torch.compile'd; or onnxruntime), decoded into people, tracked (stable ids),
smoothed (One-Euro) and drawn with an FPS counter (and a 3D view when the network predicts 3D:
XNect Stage II lifting when the checkpoint has it, else the Stage I location-map read-out; see
tools/realtime/pose3d.py). With --fit (or --bvh DIR) a 3D model's people also get a kinematic
skeleton each (XNect Stage III, docs/motion.md): joint angles and fitted joints in the JSON, the
fitted skeletons in the 3D view, and DIR/person_<id>.bvh per tracked person.

With a display: a window; keys q / Esc quit, space pauses. Without one (or with --headless):
--output writes the annotated video, --json the people of every frame. An unreadable frame is
skipped, the end of a file or a camera that stops ends the run cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from selecsls.heads.motion.fitter import SkeletonFitter
from selecsls.tools._cli import machine_load, parse_size, run_cli
from selecsls.tools.realtime.app import Options, has_display, run
from selecsls.tools.realtime.fitting import MotionCapture
from selecsls.tools.realtime.loading import (
    DEMO_PRECISIONS,
    load_onnx_estimator,
    load_torch_estimator,
)
from selecsls.tools.realtime.outputs import (
    check_output_paths,
)
from selecsls.tools.realtime.runtime import PoseEstimator
from selecsls.tools.realtime.sources import open_source
from selecsls.tools.realtime.tracking import Tracker

BACKENDS = ("pytorch", "onnxruntime")


def add_auto_choice(
    p: argparse.ArgumentParser, flag: str, choices: tuple[str, ...], help: str
) -> None:
    """A flag whose default, auto, lets the demo pick among `choices` for the machine."""
    p.add_argument(flag, default="auto", choices=("auto", *choices), help=help)


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
        help=f"one of {', '.join(DEMO_PRECISIONS)}; auto: fp16 on CUDA; on a CPU the fastest of "
        "fp32, bf16 (where native) and int8 for this model and input size, measured once in a "
        "few seconds and cached (with --compile: bf16 where native, else fp32); int8: CPU, "
        "post-training quantized (about 2x bf16's speed on AMX and Zen 4, no faster than fp32 "
        "on an AVX2-only CPU)",
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
    add_auto_choice(
        p,
        "--graph",
        ("on", "off"),
        "pytorch backend: run the network, peak finding and limb scoring as one CUDA "
        "graph, people assembled on the host (tools/realtime/graph.py); auto (default): on "
        "with CUDA, unless --compile or int8; on without CUDA runs the same step eagerly",
    )
    add_auto_choice(
        p,
        "--letterbox",
        ("host", "device"),
        "where frames are resized and padded to the input size: device: inside the CUDA "
        "graph (tools/realtime/letterbox.py), host: cv2 on the CPU; auto (default): device "
        "with the graph runner on CUDA, else host",
    )
    add_auto_choice(
        p,
        "--pipeline",
        ("on", "off"),
        "on: the network works on the next frame in a thread while the last one is "
        "decoded and drawn; off: one after the other; auto (default): on with a CUDA graph, ONNX "
        "Runtime on CUDA or 4+ CPUs, off for eager PyTorch on CUDA (slower there, measured)",
    )
    p.add_argument(
        "--lifting",
        help="checkpoint whose Stage II (lifting head) lifts the 3D poses: needed with an ONNX "
        "file (it holds Stage I only); default: the checkpoint's own lifting head, if any",
    )
    p.add_argument(
        "--fit",
        action="store_true",
        help="fit a kinematic skeleton to each person's 3D pose (Stage III; needs a 3D model)",
    )
    p.add_argument("--bvh", metavar="DIR", help="write one BVH file per tracked person (--fit)")
    p.add_argument(
        "--rescale-frames",
        type=int,
        default=10,
        help="--fit: frames over which each person's bone lengths are measured (2-100)",
    )
    return p.parse_args(argv)


def build_motion(args: argparse.Namespace, fps: float) -> MotionCapture | None:
    """Stage III for --fit / --bvh DIR (checked before anything is loaded), else None."""
    if not (args.fit or args.bvh):
        return None
    fitter = SkeletonFitter(rescale_frames=args.rescale_frames)
    return MotionCapture(fitter, bvh_dir=args.bvh, fps=fps)


def busy_machine_hint() -> None:
    """On a machine whose other jobs already fill the cores, several intra-op threads spin-wait on
    each other (measured here: 2 threads 30x slower than 1 at load 4 on 2 cores); say so."""
    cores, load = machine_load()
    if cores > 1 and load >= cores:
        print(
            f"note: the machine is busy (load {load:.1f} on {cores} cores); "
            "--threads 1 is likely much faster",
            file=sys.stderr,
        )


def use_pipeline(choice: str, estimator: PoseEstimator) -> bool:
    """Whether the network runs in its own thread. "auto": with a CUDA graph or ONNX Runtime on
    CUDA (one call per frame that waits with the GIL released, so the host work overlaps the
    GPU's), or with 4+ logical CPUs. Not with eager PyTorch on CUDA: its ~200 kernel launches
    per frame each take the GIL, which the drawing thread holds half the time; on the H200 that
    ran at 0.62x the sequential loop (50 against 82 fps), while the graph runner gained 1.65x
    (252 against 153 fps; docs/benchmarks.md). On 2 vCPUs that share a physical core the host
    work beside it slows the CPU network: 0.8-0.9x when otherwise idle, 1.1-1.2x when loaded
    (docs/demo.md)."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"unknown --pipeline {choice!r}; valid: auto, on, off")
    if choice != "auto":
        return choice == "on"
    description = estimator.runner.description
    if "cuda-graph" in description or "CUDAExecutionProvider" in description:
        return True
    device = getattr(estimator.runner, "device", None)
    if getattr(device, "type", "cpu") == "cuda":
        return False
    return (os.cpu_count() or 1) >= 4


def build_estimator(args: argparse.Namespace) -> PoseEstimator:
    if args.backend not in BACKENDS:
        raise ValueError(f"unknown backend {args.backend!r}; valid: {', '.join(BACKENDS)}")
    size = parse_size(args.input_size) if args.input_size else None
    if args.backend == "onnxruntime":
        if args.compile:
            raise ValueError("--compile is for the pytorch backend (onnxruntime optimises itself)")
        if args.precision == "int8" or args.calibration:
            raise ValueError("--precision int8 (and --calibration) are for the pytorch backend")
        if args.graph == "on":
            raise ValueError("--graph on is for the pytorch backend (onnxruntime runs its own)")
        if args.letterbox == "device":
            raise ValueError("--letterbox device is for the pytorch backend's graph runner")
        return load_onnx_estimator(args.checkpoint, size, args.lifting)
    estimator = load_torch_estimator(
        args.checkpoint,
        size or (512, 320),
        args.device,
        args.precision,
        args.lifting,
        args.compile,
        args.calibration,
        args.graph,
        args.letterbox,
    )
    if args.compile:
        print(f"compiling the network for {'x'.join(map(str, estimator.input_size))} ...")
        seconds = estimator.runner.warm_up(estimator.input_size)
        print(f"ready in {seconds:.1f} s ({estimator.runner.description})")
    elif getattr(estimator.runner, "captured", None) is not None:
        print(f"capturing the CUDA graph for {'x'.join(map(str, estimator.input_size))} ...")
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
        motion = build_motion(args, source.fps)
    except BaseException:
        source.close()
        raise
    try:
        estimator = build_estimator(args)
    except BaseException:
        source.close()
        raise
    tracker = Tracker(
        smoothing=not args.no_smooth,
        min_cutoff=args.min_cutoff,
        beta=args.beta,
        sigmas=estimator.codec.keypoint_skeleton.sigma_array,
    )
    options = Options(args.output, args.json_path, show, args.max_frames)
    options.pipeline = use_pipeline(args.pipeline, estimator)
    options.motion = motion
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
    if motion is not None and estimator.pose3d_source is None:
        print("note: --fit needs a 3D model (xnect3d head); this one has none", file=sys.stderr)
    for path in summary["bvh"]:
        print(f"wrote bvh {path}")
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
