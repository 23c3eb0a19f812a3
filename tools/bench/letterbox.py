"""Time the demo's letterbox per frame size: the host's (cv2 INTER_AREA resize, pad, BGR -> RGB;
`PoseEstimator.preprocess`) against the device's (`tools/realtime/letterbox.py`, two matmuls),
in one process, on the same frames:

    python -m selecsls.tools.bench.letterbox --size 512x320 --frames 1280x720 1920x1080

On CUDA the device line times the upload of the raw frame from pinned memory plus the letterbox,
synchronised, as the graph runner does them (there the letterbox is part of the captured graph);
on the CPU it times the letterbox alone, to show why the demo keeps cv2 there. The host figure is
what a frame costs the demo's host thread, which the device path saves.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import torch

from selecsls.datasets.synthetic_people import render_image
from selecsls.tools._cli import parse_size
from selecsls.tools.bench.suite import check_device
from selecsls.tools.bench.timing import summarize, time_call
from selecsls.tools.realtime.letterbox import DeviceLetterbox
from selecsls.tools.realtime.runtime import PoseEstimator


class CanvasRunner:
    """Stands in for a runner that takes the host's uint8 canvas (the graph runner's input)."""

    takes_uint8 = True


def time_sizes(
    input_size: tuple[int, int], frame_sizes: list[tuple[int, int]], device: str, reps: int
) -> list[dict]:
    """Per frame size (W, H): median ms of the host letterbox and of the device one."""
    device = torch.device(device)
    host = PoseEstimator(CanvasRunner(), input_size)
    letterbox = DeviceLetterbox(input_size).to(device)
    scene = render_image(0, 1, 640, 400, 4)[0]
    return [
        time_frame(host, letterbox, cv2.resize(scene, size), device, reps) for size in frame_sizes
    ]


def time_frame(
    host: PoseEstimator, letterbox: DeviceLetterbox, frame, device: torch.device, reps: int
) -> dict:
    """One frame (H, W, 3) BGR: {"frame": (W, H), "host_ms", "device_ms"} (medians)."""
    source = torch.from_numpy(frame)[None]
    if device.type == "cuda":
        source = source.pin_memory()

    def on_host():
        host.preprocess(frame)

    @torch.inference_mode()
    def on_device():
        letterbox(source.to(device, non_blocking=True))

    on_host(), on_device()  # warm-up: the weight matrices, the kernels
    cpu = torch.device("cpu")
    host_ms, device_ms = [], []
    for _ in range(reps):  # alternated, so a shared machine's drift hits both alike
        host_ms.append(time_call(on_host, cpu))
        device_ms.append(time_call(on_device, device))
    return {
        "frame": (frame.shape[1], frame.shape[0]),
        "host_ms": summarize(host_ms)["median_ms"],
        "device_ms": summarize(device_ms)["median_ms"],
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="512x320", help="network input WxH")
    p.add_argument(
        "--frames", nargs="+", default=["640x480", "1280x720", "1920x1080"], help="frame WxH"
    )
    p.add_argument("--device", default="cpu", help="where the device letterbox runs")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    return p


def checked_sizes(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple:
    """(input size, [frame sizes]) from the arguments; a bad one exits with a usage error."""
    if args.reps < 1:
        p.error(f"--reps must be at least 1, got {args.reps}")
    try:
        check_device(args.device)
        frames = [parse_size(f, "--frames") for f in args.frames]
        return parse_size(args.size, "--size"), frames
    except ValueError as err:
        p.error(str(err))


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    size, frames = checked_sizes(p, args)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rows = time_sizes(size, frames, args.device, args.reps)
    print(f"letterbox to {size[0]}x{size[1]}, {args.threads} thread(s), medians of {args.reps}")
    print(f"| frame | host (cv2) ms | device ({args.device}) ms | device / host |")
    print("|---|---|---|---|")
    for row in rows:
        ratio = row["device_ms"] / row["host_ms"]
        width, height = row["frame"]
        print(
            f"| {width}x{height} | {row['host_ms']:.3f} | {row['device_ms']:.3f} | {ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
