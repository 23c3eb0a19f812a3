"""What `tools/eval.py` needs from each task's evaluator, and the pieces they share.

`tools/eval.py` reads the checkpoint, finds its task (checkpoint["experiment"]["task"], else from
the model's heads) and hands over to EVALUATORS[task] (a plain dict in eval.py). An Evaluator
adds its own command-line options to the one parser and runs with the parsed arguments and the
checkpoint dict; options of another task's evaluator are refused before anything is loaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from selecsls.backbones.checkpoint import CheckpointError
from selecsls.heads import load_model

# --int8-calibration, shared by the pose evaluators (tools/deploy/quantize.py does the work)
INT8_OPTION: dict[str, Any] = {
    "metavar": "FOLDER",
    "help": "run the network in int8 on the CPU (post-training quantized, as the demo's "
    "--precision int8), calibrated on up to 32 images of FOLDER (e.g. training images)",
}


@dataclass(frozen=True)
class Evaluator:
    """One task's evaluation.

    add_arguments(group): adds the task's own options (each with a default, none required);
    run(args, checkpoint) -> exit code: checkpoint is the file's dict ({} for a published name);
    usage: one line naming the task's data options, shown when they are missing or misused.
    """

    add_arguments: Callable[[argparse._ArgumentGroup], None]
    run: Callable[[argparse.Namespace, dict[str, Any]], int]
    usage: str


def add_once(group: argparse._ArgumentGroup, name: str, **kwargs: Any) -> None:
    """Add an option unless another evaluator already did: evaluators may share options (the
    pose tasks' --ann, --images, ...), and all groups of a parser share one option table."""
    if name not in group._option_string_actions:
        group.add_argument(name, **kwargs)


def add_pose_options(group: argparse._ArgumentGroup, ann_help: str, results_help: str) -> None:
    """The options the 2D and 3D pose evaluators share (added once, by whichever comes first)."""
    add_once(group, "--ann", help=ann_help)
    add_once(group, "--images", help="folder holding the json's file_name paths")
    add_once(group, "--input-size", help="letterbox W x H (default: the run's data.input_size)")
    add_once(group, "--results", help=results_help)
    add_once(group, "--max-images", type=int, help="evaluate the json's first N images only")
    add_once(group, "--int8-calibration", **INT8_OPTION)
    add_once(
        group,
        "--flip",
        action="store_true",
        help="flip test: average the maps of each image and its mirror image (2x the time)",
    )


def variant_label(args: argparse.Namespace) -> str:
    """The suffix naming how the printed figures were obtained: " (EMA)", " (int8)", " (flip
    test)", as they apply."""
    parts = [("EMA", args.ema), ("int8", args.int8_calibration), ("flip test", args.flip)]
    return "".join(f" ({name})" for name, used in parts if used)


def option_defaults(evaluator: Evaluator) -> dict[str, Any]:
    """{dest: default} of the evaluator's own options (parsed from nothing on a bare parser)."""
    parser = argparse.ArgumentParser(add_help=False)
    evaluator.add_arguments(parser.add_argument_group())
    return vars(parser.parse_args([]))


def load_weights(args: argparse.Namespace, checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The model of `args.model`, with the checkpoint's EMA weights when `args.ema`."""
    model = load_model(args.model)
    if args.ema:
        if "ema_state_dict" not in checkpoint:
            raise CheckpointError(f"{args.model}: holds no EMA weights (trained without ema)")
        model.load_state_dict(checkpoint["ema_state_dict"])
    return model


def run_experiment(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The resolved training config saved in the checkpoint ({} when there is none)."""
    experiment = checkpoint.get("experiment")
    return experiment if isinstance(experiment, dict) else {}
