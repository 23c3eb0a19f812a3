"""Shared command-line plumbing: user mistakes end in one clear line, never a traceback."""

from __future__ import annotations

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
