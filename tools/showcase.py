"""Figures of a finished run: `python -m selecsls.tools.showcase RUN_DIR [options]`.

    python -m selecsls.tools.showcase runs/quickstart_pose2d
    python -m selecsls.tools.showcase runs/quickstart
    python -m selecsls.tools.showcase runs/pose --images some/frames --out-dir /tmp

Reads RUN_DIR/best.pt (with the run's resolved config) and RUN_DIR/summary.csv, and writes into
RUN_DIR (or --out-dir):
  learning_curve.png   training losses per epoch, val metric (AP, top-1) per evaluated epoch
  showcase.mp4         pose runs: unseen scenes through the demo pipeline (network, decoding,
                       tracking, drawing), one scene per frame at --fps
  contact_sheet.png    pose runs: the same annotated frames as a grid, --columns wide
  confusion_matrix.png classification runs: true x predicted class over the val folder
The scenes of a run on synthetic people are fresh ones of its generator settings at a seed that
neither training nor validation used (--seed); other runs show their val images (--images).
The written paths are printed last, one per line.
"""

from __future__ import annotations

import argparse
import sys

import torch

from selecsls.tools._cli import run_cli
from selecsls.tools.visualization.showcase import ShowcaseOptions, make_showcase


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="selecsls.tools.showcase",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="a training run's out_dir (holds best.pt and summary.csv)")
    p.add_argument("--out-dir", help="write the figures here instead of RUN_DIR")
    p.add_argument("--scenes", type=int, default=12, help="pose: scenes to show (default 12)")
    p.add_argument("--columns", type=int, default=4, help="pose: contact sheet width in tiles")
    p.add_argument("--seed", type=int, help="pose: scene seed (default data.synthetic_seed + 2)")
    p.add_argument("--images", help="pose: show the images of this folder instead")
    p.add_argument(
        "--zoom",
        type=int,
        default=2,
        help="pose: enlarge the scenes this many times for drawing (the network still sees "
        "its input size); default 2",
    )
    p.add_argument("--fps", type=float, default=2.0, help="pose: video frames (scenes) a second")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", default="auto", help="pose: as the demo's --precision")
    p.add_argument("--threads", type=int, help="CPU threads for the network")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ShowcaseOptions(
        out_dir=args.out_dir,
        scenes=args.scenes,
        columns=args.columns,
        seed=args.seed,
        zoom=args.zoom,
        fps=args.fps,
        images=args.images,
        device=args.device,
        precision=args.precision,
    )
    written = make_showcase(args.run_dir, options)
    print("showcase written:")
    for path in written:
        print(path)
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
