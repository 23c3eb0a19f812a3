"""Time the demo's stages per frame (read, preprocess, network, decode, track + draw) for several
inference modes on the same frames, in one process:

    python -m selecsls.tools.bench.demo --backbone selecsls60 --size 512x320 --frames 20 --threads 1

Frames: a video of synthetic people (`datasets.synthetic_people`) at the input size, so reading
includes real video decoding. The network is a random-weight pose model (speed does not depend on
the weights); its outputs are replaced by the codec's encoding of the frame's true people before
decoding, so decode / track / draw see a realistic number of people rather than the noise of an
untrained network. On the CPU, times are CPU seconds of this process (the machine may be shared:
wall time would count other jobs' slices); with --threads 1 a frame's CPU time is the wall time it
takes on one idle core. Wall-clock fps is printed too, for reference. With --device cuda every
stage is timed in wall-clock seconds (the host waits for the GPU when it copies the outputs back,
inside the network stage), and the modes are CUDA fp32 and fp16. `--compile` adds the
torch.compile'd mode (frozen weights, the demo's `--compile`), `--int8` the int8 mode (the
demo's `--precision int8`, calibrated on other synthetic frames); on CUDA the CUDA graph runner
with the device-side decode (the demo's default there, `tools/realtime/graph.py`) is timed too,
letterboxing on the host and, as the demo does by default there, on the device.
Every frame goes through all modes in turn, so the drift of a shared machine hits them alike. The
network + decode lines then time those two stages alone per mode (for the graph runner also
pipelined: frame t assembled while the device runs frame t + 1), and the end-to-end lines the
whole demo loop per mode, alternated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from selecsls.datasets.synthetic_people import render_image
from selecsls.heads import build_model, save_model
from selecsls.heads.pose2d.codec import Pose2DCodec
from selecsls.heads.pose2d.slots import SLOT_KEYS, has_slots, slot_outputs
from selecsls.tools._cli import parse_size
from selecsls.tools.bench.suite import check_device
from selecsls.tools.deploy.quantize import Int8Runner, letterboxed
from selecsls.tools.engine.amp import cpu_has_bf16
from selecsls.tools.realtime.app import Options, annotate, run
from selecsls.tools.realtime.graph import GraphRunner
from selecsls.tools.realtime.runtime import OnnxRunner, PoseEstimator, TorchRunner
from selecsls.tools.realtime.sources import open_source
from selecsls.tools.realtime.tracking import Tracker

STAGES = ("read", "preprocess", "network", "decode", "track+draw")
CALIBRATION_SEED = 1000  # int8 calibration frames: not the timed video's


def make_video(path: Path, size: tuple[int, int], count: int, seed: int) -> list[np.ndarray]:
    """Write `count` synthetic frames (4 distinct scenes, each panned) to `path`; returns each
    frame's true COCO keypoints (P, 17, 3)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    scenes = []
    for index in range(4):
        image, _, people = render_image(index, seed, *size, 6)
        keypoints = [p["keypoints"] for p in people if p["num_keypoints"] > 0]
        scenes.append((image, np.array(keypoints, np.float32).reshape(-1, 17, 3)))
    truth = []
    for t in range(count):
        image, keypoints = scenes[(t // 8) % len(scenes)]
        shift = 2 * (t % 8)
        matrix = np.float32([[1, 0, shift], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, matrix, size, borderMode=cv2.BORDER_REPLICATE))
        moved = keypoints.copy()
        moved[..., 0] += shift
        moved[moved[..., 2] == 0] = 0
        truth.append(moved)
    writer.release()
    return truth


class Stopwatch:
    """Accumulates time per stage: process CPU time by default, or any other clock."""

    clock = staticmethod(time.process_time)

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._last = self.clock()

    def lap(self, stage: str) -> None:
        now = self.clock()
        self.seconds[stage] += now - self._last
        self._last = now

    def skip(self) -> None:
        """Leave the time since the last lap out of every stage."""
        self._last = self.clock()


class WallStopwatch(Stopwatch):
    """Wall-clock laps: on a GPU the host's CPU time would count its spin-waits, not the work."""

    clock = staticmethod(time.perf_counter)


class Laps:
    """The stage clock (`watch_type`) and the wall clock, lapped and skipped together."""

    def __init__(self, watch_type: type) -> None:
        self.stage, self.wall = watch_type(), WallStopwatch()

    def lap(self, stage: str) -> None:
        self.stage.lap(stage)
        self.wall.lap(stage)

    def skip(self) -> None:
        self.stage.skip()
        self.wall.skip()


def time_pipeline(
    estimators: dict[str, PoseEstimator],
    video: Path,
    truth: list,
    warmup: int,
    watch_type: type = Stopwatch,
) -> dict[str, dict]:
    """Run every frame of `video` through the demo's stages in each mode; returns {mode: per-frame
    ms of each stage (frames after the first `warmup`), total, fps by the stage clock and by the
    wall clock}. Each frame goes through all modes in turn (round-robin), so the drift of a shared
    machine hits every mode alike; the frame is read once and its read time counts for each."""
    source = open_source(str(video))
    frames = iter(source)
    trackers = {name: Tracker() for name in estimators}
    watches = {name: Laps(watch_type) for name in estimators}
    reading = Laps(watch_type)
    for t, frame_truth in enumerate(truth):
        if t == warmup:  # start counting afresh
            watches = {name: Laps(watch_type) for name in estimators}
            reading = Laps(watch_type)
        reading.skip()
        frame = next(frames)
        reading.lap("read")
        for name, estimator in estimators.items():
            watches[name].skip()
            run_stages(estimator, trackers[name], frame, frame_truth, watches[name])
    source.close()
    measured = len(truth) - warmup
    return {name: frame_ms(laps, reading, measured) for name, laps in watches.items()}


def run_stages(estimator, tracker, frame, frame_truth, laps: Laps) -> None:
    """One frame through preprocess, network, decode (of the true people's maps, see the module
    docstring), track and draw, lapping `laps` after each."""
    images, matrix = estimator.preprocess(frame.image)
    laps.lap("preprocess")
    estimator.runner(images)
    laps.lap("network")
    maps = truth_outputs(estimator.runner, encode_truth(estimator, frame_truth, matrix))
    laps.skip()  # encoding is test scaffolding, not demo work
    keypoints, scores = estimator.codec.decode_outputs(maps, matrix)
    laps.lap("decode")
    people = tracker.update(keypoints, scores, frame.time)
    annotate(frame.image, people, _NoPose3D, 0.0, 0)  # draws on a copy
    laps.lap("track+draw")


def encode_truth(estimator: PoseEstimator, keypoints: np.ndarray, matrix: np.ndarray) -> dict:
    """One frame's true people (P, 17, 3) in frame pixels -> the codec's maps at the network
    input, through the letterbox `matrix` (frame -> input pixels)."""
    people = keypoints.copy()
    people[..., :2] = people[..., :2] * matrix[0, 0] + matrix[:, 2]
    return estimator.codec.encode(people, estimator.input_size)


def truth_outputs(runner, maps: dict) -> dict:
    """One image's encoded maps as `runner` would return them: the maps, or for a graph runner
    with the device-side decode its peak and limb slots of those maps (`heads.pose2d.slots`;
    static shapes, so the device's time does not depend on the maps' content)."""
    step = getattr(runner, "step", None)
    if not getattr(step, "slots", False):
        return maps
    tensors = (torch.from_numpy(maps[k][None]) for k in ("heatmaps", "pafs"))
    return {k: v[0].numpy() for k, v in slot_outputs(*tensors, step.codec).items()}


def frame_ms(laps: Laps, reading: Laps, measured: int) -> dict:
    """Per-frame ms of each stage by the stage clock, its total and fps, and the wall fps."""
    for watch, read in ((laps.stage, reading.stage), (laps.wall, reading.wall)):
        watch.seconds["read"] += read.seconds["read"]
    ms = {k: 1e3 * v / measured for k, v in laps.stage.seconds.items()}
    ms["total"] = sum(ms.values())
    ms["cpu_fps"] = 1e3 / ms["total"]
    ms["wall_fps"] = measured / sum(laps.wall.seconds.values())
    return ms


class _NoPose3D:
    poses3d = None


class TruthMaps:
    """A runner that runs the real network (for its time) and then returns frame t's encoding of
    the true people (frames arrive in order), so the demo decodes realistic maps."""

    def __init__(self, runner, maps: list[dict]) -> None:
        self.runner, self.t = runner, 0
        self.maps = [truth_outputs(runner, m) for m in maps]
        self.description = runner.description
        self.takes_uint8 = getattr(runner, "takes_uint8", False)
        self.takes_frames = getattr(runner, "takes_frames", False)

    def __call__(self, images):
        self.runner(images)
        maps = self.maps[self.t % len(self.maps)]
        self.t += 1
        keys = SLOT_KEYS if has_slots(maps) else ("heatmaps", "pafs")
        return {k: maps[k][None] for k in keys}


def time_end_to_end(
    runs: dict[str, tuple[PoseEstimator, bool]],
    video: Path,
    truth: list,
    rounds: int = 5,
    video_size: tuple[int, int] | None = None,
) -> dict:
    """Wall fps of the whole demo loop (`demo.run`, headless, nothing written) for each named
    (estimator, pipelined) pair, alternated `rounds` times so drift on a shared machine hits
    all alike. video_size: the frames' (W, H), default the input size. Returns {name: [fps
    per round]}."""
    first = next(iter(runs.values()))[0]  # all share the input size and codec
    matrix = first.resize.matrix(*(video_size or first.input_size))
    maps = [encode_truth(first, people, matrix) for people in truth]
    fps: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (estimator, pipelined) in runs.items():
            timed = PoseEstimator(TruthMaps(estimator.runner, maps), estimator.input_size)
            options = Options(pipeline=pipelined)
            fps[name].append(run(timed, open_source(str(video)), Tracker(), options)["fps"])
    return fps


def time_network_decode(
    estimator: PoseEstimator, frames: list[np.ndarray], truth: list, rounds: int = 3
) -> dict[str, list[float]]:
    """Wall fps of the network plus the decode alone (no reading, drawing or tracking), over
    `frames` (preprocessed once, untimed), `rounds` times: {"sequential": [...]} and, for a runner
    that can queue a frame (`submit` / `collect`, the graph runner), {"pipelined": [...]}, with
    each frame's people assembled on the host while the device runs the next frame, as issue #23
    lays the graph path out. Decoding uses the true people's maps, as elsewhere here."""
    runner, codec = estimator.runner, estimator.codec
    inputs = [estimator.preprocess(frame) for frame in frames]
    matrix = inputs[0][1]
    outputs = [
        truth_outputs(runner, encode_truth(estimator, people, matrix))
        for people in truth[: len(inputs)]
    ]
    loops = {"sequential": _sequential}
    if hasattr(runner, "submit"):
        loops["pipelined"] = _pipelined
    fps: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(runner, codec, inputs, outputs)
            fps[name].append(len(inputs) / (time.perf_counter() - start))
    return fps


def _sequential(runner, codec, inputs: list, outputs: list) -> list:
    """Each frame through the network, then decoded; returns the people per frame."""
    people = []
    for (images, matrix), maps in zip(inputs, outputs):
        runner(images)
        people.append(codec.decode_outputs(maps, matrix))
    return people


def _pipelined(runner, codec, inputs: list, outputs: list) -> list:
    """The same, with frame t + 1 queued before frame t is collected and assembled."""
    people, pending = [], runner.submit(inputs[0][0])
    for t in range(len(inputs)):
        following = runner.submit(inputs[t + 1][0]) if t + 1 < len(inputs) else None
        runner.collect(pending)
        people.append(codec.decode_outputs(outputs[t], inputs[t][1]))
        pending = following
    return people


def print_network_decode(
    modes: dict[str, PoseEstimator], video: Path, truth: list, rounds: int = 3
) -> None:
    """Network + decode fps per mode (the issue's ">= 500 fps" figure), median over rounds."""
    source = open_source(str(video))
    frames = [frame.image for frame, _ in zip(source, truth)]
    source.close()
    print(f"\nnetwork + decode (wall clock, {len(frames)} frames, {rounds} rounds, medians):")
    for name, estimator in modes.items():
        fps = time_network_decode(estimator, frames, truth, rounds)
        cells = ", ".join(f"{loop} {np.median(v):.1f} fps" for loop, v in fps.items())
        print(f"  {name}: {cells}")


def variants(
    model,
    size,
    onnx_path: Path | None,
    threads: int,
    device: str = "cpu",
    compile: bool = False,
    int8: bool = False,
    video_size: tuple[int, int] | None = None,
) -> dict:
    """name -> PoseEstimator, for the inference modes compared (compiled ones warmed up). On
    CUDA the graph runner twice: letterboxing on the host and on the device (captured for
    `video_size` frames, default the input size).

    The half-precision mode is fp16 on CUDA, bf16 on a CPU that computes it natively, and left
    out elsewhere: without native bf16 it runs ~8x slower than fp32 and times only fallbacks.
    """
    fast = "fp16" if device.startswith("cuda") else "bf16" if cpu_has_bf16() else "fp32"
    out = {
        f"pytorch {device} fp32 (BN unfused)": TorchRunner(model, device, "fp32", fuse=False),
        f"pytorch {device} fp32, BN folded, channels_last": TorchRunner(model, device, "fp32"),
    }
    if fast != "fp32":
        out[f"pytorch {device} {fast}, BN folded, channels_last"] = TorchRunner(model, device, fast)
    if compile:
        runner = TorchRunner(model, device, fast, compile=True)
        seconds = runner.warm_up(size)
        print(f"compiled the {fast} network in {seconds:.1f} s ({runner.description})")
        out[f"pytorch {device} {fast}, BN folded, channels_last, compiled"] = runner
    if device.startswith("cuda"):
        runner = GraphRunner(model, Pose2DCodec(), device, fast)
        seconds = runner.warm_up(size)
        print(f"captured the CUDA graph in {seconds:.1f} s ({runner.description})")
        out[f"pytorch {device} {fast}, cuda graph + device decode"] = runner
        runner = GraphRunner(model, Pose2DCodec(), device, fast, letterbox=size)
        runner.warm_up(video_size or size)
        out[f"pytorch {device} {fast}, cuda graph + device decode + device letterbox"] = runner
    if int8 and device == "cpu":
        out["pytorch cpu int8 (x86, post-training quantized)"] = int8_runner(model, size)
    if onnx_path is not None:
        out["onnxruntime fp32 (BN folded)"] = OnnxRunner(onnx_path, threads)
    return {name: PoseEstimator(runner, size, Pose2DCodec()) for name, runner in out.items()}


def int8_runner(model, size: tuple[int, int], frames: int = 8) -> Int8Runner:
    """The demo's int8 mode, calibrated on synthetic frames other than the timed ones."""
    images = [render_image(i, CALIBRATION_SEED, *size, 6)[0] for i in range(frames)]
    runner = Int8Runner(model, TorchRunner(model, "cpu", "auto"))
    runner.calibrate([letterboxed(image, size) for image in images], "synthetic frames")
    return runner


def print_end_to_end(
    modes: dict[str, PoseEstimator],
    video: Path,
    truth: list,
    rounds: int = 5,
    video_size: tuple[int, int] | None = None,
) -> None:
    """The demo loop's wall fps: the fastest eager mode (the last BN-folded one: half precision
    where there is one, else fp32) sequential and pipelined, and the compiled, graph and int8
    modes when there are; ratios against the first."""
    names = list(modes)
    eager = [name for name in names if name.endswith("BN folded, channels_last")][-1]
    runs = {"sequential": (modes[eager], False), "pipelined": (modes[eager], True)}
    compiled = [name for name in names if name.endswith("compiled")]
    if compiled:
        runs["compiled, sequential"] = (modes[compiled[0]], False)
    graphed = [name for name in names if name.endswith("device decode")]
    if graphed:
        runs["graph, sequential"] = (modes[graphed[0]], False)
        runs["graph, pipelined"] = (modes[graphed[0]], True)
    letterboxed = [name for name in names if name.endswith("device letterbox")]
    if letterboxed:
        runs["graph + device letterbox, sequential"] = (modes[letterboxed[0]], False)
        runs["graph + device letterbox, pipelined"] = (modes[letterboxed[0]], True)
    int8 = [name for name in names if " int8 " in name]
    if int8:
        runs["int8, sequential"] = (modes[int8[0]], False)
        runs["int8, pipelined"] = (modes[int8[0]], True)
    fps = time_end_to_end(runs, video, truth, rounds, video_size)
    print(f"\nend to end (demo loop, wall clock, {eager}):")
    for mode, values in fps.items():
        print(f"  {mode}: " + ", ".join(f"{v:.1f}" for v in values) + " fps")
    base = np.median(fps["sequential"])
    print("  medians: " + ", ".join(f"{mode} {np.median(v):.1f} fps" for mode, v in fps.items()))
    for mode in list(fps)[1:]:
        print(f"  {mode} / sequential: {np.median(fps[mode]) / base:.2f}x")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="selecsls60")
    p.add_argument("--width", type=float, default=1.0, help="backbone width multiplier")
    p.add_argument("--size", default="512x320", help="network input WxH")
    p.add_argument(
        "--video-size",
        help="frame WxH (default: the input size); larger frames add the letterbox's resize",
    )
    p.add_argument("--frames", type=int, default=20, help="frames timed (after 3 warm-up)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (wall-clock stage times)")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd mode")
    p.add_argument("--int8", action="store_true", help="also time the int8 mode (CPU)")
    p.add_argument(
        "--rounds", type=int, default=5, help="alternated end-to-end runs per mode (medians)"
    )
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        check_device(args.device)
        size = parse_size(args.size, "--size")
        video_size = parse_size(args.video_size, "--video-size") if args.video_size else size
    except ValueError as err:
        p.error(str(err))
    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    watch_type = WallStopwatch if args.device.startswith("cuda") else Stopwatch
    warmup = 3
    torch.manual_seed(0)
    config = {"backbone": args.backbone, "backbone_width": args.width, "heads": {"xnect2d": {}}}
    model = build_model(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "people.mp4"
        truth = make_video(video, video_size, args.frames + warmup, args.seed)
        onnx_path = None
        if not args.no_onnx:
            from selecsls.tools.export import export_checkpoint

            checkpoint = save_model(model, Path(folder) / "model.pt")
            onnx_path = Path(folder) / "model.onnx"
            export_checkpoint(str(checkpoint), str(onnx_path), size)
        people = np.mean([len(t) for t in truth])
        print(
            f"{args.backbone} (width {args.width}) + xnect2d, {size[0]}x{size[1]} "
            f"(frames {video_size[0]}x{video_size[1]}), "
            f"{args.threads} thread(s), "
            f"{args.frames} frames, {people:.1f} people per frame; ms per frame "
            f"({'wall' if watch_type is WallStopwatch else 'CPU'} time)\n"
        )
        modes = variants(
            model, size, onnx_path, args.threads, args.device, args.compile, args.int8, video_size
        )
        header = "| mode | " + " | ".join(STAGES) + " | total | fps (stage clock) | fps (wall) |"
        print(header + "\n|" + "---|" * (len(STAGES) + 4))
        timings = time_pipeline(modes, video, truth, warmup, watch_type)
        for name, ms in timings.items():
            cells = " | ".join(f"{ms[k]:.1f}" for k in (*STAGES, "total"))
            print(f"| {name} | {cells} | {ms['cpu_fps']:.1f} | {ms['wall_fps']:.1f} |")
        print_network_decode(modes, video, truth, args.rounds)
        print_end_to_end(modes, video, truth, args.rounds, video_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
