"""Train any task from one flat YAML config: `python -m selecsls.tools.train CONFIG.yaml [k=v]`.

    python -m selecsls.tools.train configs/quickstart/digits.yaml
    python -m selecsls.tools.train configs/imagenet/selecsls60b.yaml data.root=/data/imagenet
    torchrun --nproc_per_node=8 -m selecsls.tools.train configs/imagenet/selecsls60b.yaml \\
        data.root=/data/imagenet run.out_dir=runs/60b
    ... run.resume=true      # continue from run.out_dir/last.pt

Overrides are `section.key=value` (value read as YAML). The resolved config is written to
run.out_dir/config.yaml and into every checkpoint; `--print-config` shows it and exits.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from selecsls.tools._cli import run_cli
from selecsls.tools.engine.distributed import cleanup
from selecsls.tools.engine.experiment import load_experiment
from selecsls.tools.engine.trainer import Trainer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="selecsls.tools.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="experiment YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    parser.add_argument("--print-config", action="store_true", help="print resolved config, exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # --print-config shows the resolved keys even where the data or weights are elsewhere
    task, config = load_experiment(args.config, args.overrides, check_task=not args.print_config)
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), end="")
        return 0
    try:
        trainer = Trainer(task, config)
        metrics = trainer.fit()
        if trainer.info.is_main and metrics:
            print(f"done: {trainer.out_dir}/last.pt, best {task.best_metric} {trainer.best:.4g}")
    finally:
        cleanup()
    return 0


def cli() -> int:
    """The console script (`selecsls-...`): user mistakes end in one line, exit code 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
