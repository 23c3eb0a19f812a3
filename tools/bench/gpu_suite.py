"""Every GPU measurement docs/benchmarks.md quotes, in one run that fits a time budget.

A lent GPU machine gives a session a few minutes in all, so the measurements run as one prepared
command, most important first; a step that would not fit in the time left is skipped and listed.
Here, once per checkout (wheels for the GPU image's Python 3.12; the image has torch, numpy,
OpenCV and SciPy, not pycocotools or albumentations):

    make gpu-wheels

Then on the GPU machine, from the repository root, with `.whl` carried:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/selecsls && \
    PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1 \
    python3 -m selecsls.tools.bench.gpu_suite --budget 420 --out "$OUT"

    python -m selecsls.tools.bench.gpu_suite --dry-run      # print the steps, run nothing

Writes everything to OUT/gpu_suite.log, the forward timings to OUT/forward.json and each step's
status and seconds to OUT/summary.json (three files: the device tool returns at most eight).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TRAIN = ["-m", "selecsls.tools.benchmark", "--device", "cuda", "--train-only", "--quiet"]
TRAIN += ["--reps", "10", "--warmup", "3", "--train-amp", "bf16"]


@dataclass(frozen=True)
class Step:
    """One measurement: `python <argv>`, expected to take about `estimate_s` on an H200; with
    `cpus`, pinned to those CPU cores (the CPU figures are for a 2-core machine)."""

    name: str
    argv: tuple[str, ...]
    estimate_s: float
    cpus: tuple[int, ...] | None = None


def steps(out: str) -> list[Step]:
    """The measurements, most important first: issue #23's figures not measured yet, then the
    repeats of those measured once."""
    forward = ["-m", "selecsls.tools.benchmark", "--device", "cuda", "--quiet"]
    forward += ["--models", "selecsls60", "resnet50", "--modes", "deploy", "fp16", "graph"]
    forward += ["--sizes", "224", "400", "512", "512x320", "--batches", "1", "16", "--reps", "20"]
    forward += ["--warmup", "5", "--json", f"{out}/forward.json"]
    demo = ["-m", "selecsls.tools.bench.demo", "--device", "cuda", "--no-onnx", "--frames", "100"]
    demo += ["--threads", "4", "--rounds", "3"]
    tests = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_graph_runner.py"]
    tests += ["tests/test_device_letterbox.py"]
    tests += ["tests/test_peaks_torch.py", "tests/test_benchmark.py", "tests/test_device_decode.py"]
    tests += ["-k", "cuda or graph"]
    loader = ["-m", "selecsls.tools.bench.loader", "--images", "3200", "--workers", "8", "16"]
    loader += ["--batch", "128", "--consumer", "selecsls60", "--device", "cuda", "--rounds", "3"]
    loader += ["--device-decode"]
    letterbox = ["-m", "selecsls.tools.bench.letterbox", "--device", "cuda", "--threads", "4"]
    letterbox += ["--frames", "640x480", "1280x720", "1920x1080", "3840x2160"]
    fusion = ["-m", "selecsls.tools.bench.conv_relu", "--models", "selecsls60", "resnet50"]
    fusion += ["pose:selecsls60", "--sizes", "224", "512", "512x320"]
    found = [
        Step("cuda tests (graph capture equals eager)", tuple(tests), 40),
        Step("demo stages, network + decode and end-to-end fps, graph vs eager", tuple(demo), 100),
        Step("forward: seed table with the graph mode", tuple(forward), 90),
        Step("ImageNet loader vs the training step", tuple(loader), 80),
        *cpu_steps(),
        Step("probe: cuDNN's fused convolution + ReLU in the graph path", tuple(fusion), 60),
        Step("letterbox: host cv2 vs in-graph matmuls", tuple(letterbox), 15),
        # the third batch size at 368 px, not yet measured
        train_368(256),
        # a webcam's frames: the host's letterbox (a 4 ms INTER_AREA resize on the Zen 3)
        Step("demo with 1280x720 frames", (*demo, "--video-size", "1280x720"), 90),
        # never measured before this one, in the order above; then a repeat: the batch-128 cell's
        # one run (2026-12-04) looked like an outlier
        train_224(128),
    ]
    # measured once already (docs/benchmarks.md, 2026-12-04): repeats, if time is left
    found += [train_224(64), train_224(256), train_368(64), train_368(128)]
    compiled = [*TRAIN, "--models", "selecsls60", "resnet50", "--train-batch", "128"]
    found.append(Step("train 224 px batch 128 compiled", (*compiled, "--train-compile"), 150))
    return found


def train_224(batch: int) -> Step:
    """The ImageNet-size training step, SelecSLS-60 against ResNet-50."""
    argv = [*TRAIN, "--models", "selecsls60", "resnet50", "--train-batch", str(batch)]
    return Step(f"train 224 px batch {batch}", (*argv, "--train-size", "224"), 40)


def train_368(batch: int) -> Step:
    """The COCO-size training step with the XNect 2D head, on either trunk."""
    argv = [*TRAIN, "--models", "pose:selecsls60", "pose:resnet50", "--train-size", "368"]
    seconds = 45 if batch <= 128 else 70
    return Step(
        f"train 368 px xnect2d batch {batch}", (*argv, "--train-batch", str(batch)), seconds
    )


# the host's first two cores: issue #23's CPU figures are for 2 cores, and the GPU machine's host
# is an AMX Xeon, a CPU kind the 2-core sessions rarely get
TWO_CORES = (0, 1)


def cpu_steps() -> list[Step]:
    """SelecSLS-60 + XNect 2D at 512x320 on two of the host's cores: the network per precision
    against the matmul bound, and the demo end to end (issue #23: 30 fps on 2 AMX cores)."""
    bound = ["-m", "selecsls.tools.bench.cpu_bound", "--backbone", "selecsls60"]
    bound += ["--size", "512x320", "--threads", "2", "--reps", "5"]
    demo = ["-m", "selecsls.tools.bench.demo", "--backbone", "selecsls60", "--size", "512x320"]
    demo += ["--frames", "20", "--threads", "2", "--int8", "--no-onnx", "--rounds", "3"]
    return [
        Step("cpu, 2 cores: the network against its compute bound", tuple(bound), 60, TWO_CORES),
        Step("cpu, 2 cores: the demo end to end", tuple(demo), 90, TWO_CORES),
    ]


def run_step(step: Step, seconds: float, log) -> dict:
    """Run one step with a timeout, its output appended to `log`; -> its summary record."""
    command = [sys.executable, *step.argv]
    pinned = f"  # on cores {','.join(map(str, step.cpus))}" if step.cpus else ""
    log.write(f"\n## {step.name}\n$ {' '.join(command[1:])}{pinned}\n")
    log.flush()
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=seconds,
            env=os.environ.copy(),
            preexec_fn=pin_to(step.cpus),
        )
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {seconds:.0f} s"
    elapsed = time.perf_counter() - start
    log.write(f"-- {step.name}: {status} in {elapsed:.0f} s\n")
    log.flush()
    return {"step": step.name, "status": status, "seconds": round(elapsed, 1)}


def pin_to(cpus: tuple[int, ...] | None):
    """A preexec_fn that pins the child to `cpus` (those the machine has), or None."""
    if cpus is None:
        return None
    usable = set(cpus) & os.sched_getaffinity(0)

    def pin() -> None:
        try:
            if usable:
                os.sched_setaffinity(0, usable)
        except OSError:  # a container that forbids it: the step runs unpinned, threads still 2
            pass

    return pin


def step_timeout(step: Step, left: float) -> float:
    """A step may take a few times its estimate, never more than the budget left: one step that
    hangs (a capture that never returns, say) must not eat the time of the steps after it."""
    return min(left, max(3 * step.estimate_s, 60.0))


def run_all(budget: float, out: Path, start: int = 1) -> list[dict]:
    """Run the steps from number `start` (1-based) in order while they fit the budget; the rest
    are recorded as skipped."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget
    records = []
    with open(out / "gpu_suite.log", "a") as log:
        log.write(environment())
        for step in steps(str(out))[start - 1 :]:
            left = deadline - time.perf_counter()
            if left < step.estimate_s:
                records.append({"step": step.name, "status": f"skipped ({left:.0f} s left)"})
                continue
            records.append(run_step(step, step_timeout(step, left), log))
            print(f"{records[-1]['step']}: {records[-1]['status']}", flush=True)
    (out / "summary.json").write_text(json.dumps(records, indent=1) + "\n")
    return records


def environment() -> str:
    """The machine and library versions, for the log's head."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    return f"# {gpu}, torch {torch.__version__}, {os.cpu_count()} CPUs, {time.ctime()}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=420, help="seconds for all steps together")
    p.add_argument("--out", default="gpu_results", help="folder for the log and JSON files")
    p.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    p.add_argument("--start", type=int, default=1, help="first step to run (1-based; a rerun)")
    args = p.parse_args(argv)
    count = len(steps(args.out))
    if not 1 <= args.start <= count:
        p.error(f"--start {args.start}: the suite has steps 1 to {count}")
    if args.dry_run:
        total = 0.0
        for number, step in enumerate(steps(args.out), 1):
            if number < args.start:
                continue
            total += step.estimate_s
            pinned = f" (on cores {','.join(map(str, step.cpus))})" if step.cpus else ""
            command = f"python {' '.join(step.argv)}{pinned}"
            print(f"{number}. {step.name} (~{step.estimate_s:.0f} s): {command}")
        print(f"about {total:.0f} s in all; --budget {args.budget:.0f}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_suite: error: torch sees no CUDA device", file=sys.stderr)
        return 2
    records = run_all(args.budget, Path(args.out), args.start)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"{len(records) - len(failed)} of {len(records)} steps ok; see {args.out}/gpu_suite.log")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
