"""Shared command-line plumbing: user mistakes end in one clear line, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from selecsls.backbones.checkpoint import CheckpointError

# Errors that mean "the user gave us something wrong": reported, not raised.
USER_ERRORS = (CheckpointError, ValueError, FileNotFoundError, KeyError)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call `main(argv)`; print a user error as `error: ...` on stderr and return exit code 2."""
    try:
        return main(argv)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


def parse_size(text: str, what: str = "size", minimum: int = 16) -> tuple[int, int]:
    """'512x320' (W x H) -> (512, 320); ValueError naming `what` (e.g. a config key) otherwise."""
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"{what} must look like 512x320 (W x H), got {text!r}") from None
    if width < minimum or height < minimum:
        raise ValueError(f"{what} = {text!r} is too small (at least {minimum}x{minimum})")
    return width, height


def machine_load() -> tuple[int, float]:
    """(usable CPUs of this process, the 1-minute load average; 0 where the OS has none)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, cores), load


def free_cores(cores: int, load: float) -> int:
    """CPU threads a new job can use without spin-waiting on cores other jobs hold: `cores`
    (`machine_load`'s) less the load average (rounded), at least 1. Measured on 2 cores with two
    1-thread training runs beside it: the pose eval at torch's default of 2 threads ran at 0.2
    images/s, at 1 thread 5.6 images/s."""
    return max(1, min(cores, cores - int(load + 0.5)))
