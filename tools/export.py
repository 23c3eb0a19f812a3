"""Export a model (backbone + heads, BN folded) to ONNX with a dynamic input size, verified.

    python -m selecsls.tools.export runs/pose/best.pt --output pose.onnx
    python -m selecsls.tools.export runs/pose/best.pt --output pose.onnx --input-size 544x320

The graph takes (N, 3, H, W) float32 ImageNet-normalised RGB (any N, H, W) and returns the raw
head outputs by name (e.g. heatmaps (N, 19, H/8, W/8) and pafs (N, 38, H/8, W/8)); decoding stays
in Python (`selecsls.heads.pose2d.codec`). Before the file is written under its name,
onnxruntime runs it on the same random input as PyTorch, at the export size and at a second, odd
size (to prove the size is really dynamic); every output must agree within --rtol of its largest
magnitude.
The model config, input size and codec settings go into the file's metadata, which the demo's
--backend onnxruntime reads; so does a Stage I + II checkpoint's Stage II (its weights as text,
~2 MB: Stage II runs per person after decoding, in PyTorch on the CPU, not in the graph).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selecsls.tools._cli import parse_size, run_cli
from selecsls.tools.deploy.onnx import DEFAULT_OPSET, ExportError, export_checkpoint, second_size
from selecsls.tools.realtime.runtime import require_onnxruntime


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="selecsls.tools.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="our checkpoint (pose, classifier, pruned) or weight name")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--input-size", default="512x320", help="WxH of the traced input")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers in the graph")
    p.add_argument("--rtol", type=float, default=1e-4, help="allowed relative error vs PyTorch")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = parse_size(args.input_size)
    try:
        import onnx  # noqa: F401  (checked up front: the export needs it at the very end)
    except ImportError:
        raise ValueError("onnx is not installed: pip install onnx onnxruntime") from None
    require_onnxruntime()
    source = args.checkpoint
    if not Path(source).exists() and ("/" in source or source.endswith((".pt", ".pth"))):
        raise FileNotFoundError(f"checkpoint not found: {source}")
    try:
        errors = export_checkpoint(
            source, args.output, size, args.opset, not args.no_fuse, args.rtol
        )
    except ExportError as err:
        print(f"error: export check failed, nothing written: {err}", file=sys.stderr)
        return 1
    checked = f"{size[0]}x{size[1]} and {'x'.join(map(str, second_size(size)))}"
    worst = ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
    print(f"wrote {args.output}: onnxruntime matches PyTorch at {checked} (max rel. error {worst})")
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
