"""Write any loadable checkpoint in the seed's, timm's or our own format.

    python -m selecsls.tools.convert_weights SOURCE OUTPUT --to seed|timm|selecsls [--model NAME]

SOURCE is a file in any supported format or a published weight name (see README). Conversion
only renames keys, so a round trip returns identical tensors.
"""

from __future__ import annotations

import argparse
import sys

from selecsls.backbones.checkpoint import CheckpointError, atomic_save
from selecsls.heads import export_state_dict, load_model, save_model
from selecsls.heads.weights import FORMATS
from selecsls.tools._cli import run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="weight file (any supported format) or published name")
    parser.add_argument("output", help="file to write")
    parser.add_argument("--to", required=True, choices=FORMATS, help="output format")
    parser.add_argument(
        "--model", default=None, help="architecture of a seed/timm file (default: inferred)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_model(args.source, name=args.model)
    config = model.config
    if args.to == "selecsls":
        save_model(model, args.output)
    else:
        if (
            config.get("fused")
            or config.get("pruned")
            or set(config.get("heads", {})) - {"classification"}
        ):
            raise CheckpointError(
                f"{args.source}: only plain classifiers exist in {args.to} format "
                "(this model is fused, pruned or has pose heads); use --to selecsls"
            )
        atomic_save(export_state_dict(model, args.to), args.output)
        if args.to == "timm" and config["backbone"] == "selecsls84":
            print(
                "note: timm's selecsls84 ends in a 3x3 conv where the seed (and we) use 1x1; "
                "timm's own selecsls84 class will not accept this file",
                file=sys.stderr,
            )
    print(f"wrote {args.output} ({args.to} format, {config['backbone']})")
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
