"""Reading and writing weight files safely: the file-level half of weight loading.

Every read goes through `torch.load(..., weights_only=True)` (a pickle can run code); every write
goes to a temporary file in the same folder and is renamed into place, so an interrupted write
never leaves a half-written checkpoint where a good one stood.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Our own checkpoints are dicts tagged with this value under "format".
OUR_FORMAT = "selecsls"


class CheckpointError(ValueError):
    """A weight file that cannot be used: unreadable, not a checkpoint, or for another model."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a file written by torch.save without running pickled code.

    Returns the loaded dict (a bare state dict or a dict holding one). Raises CheckpointError
    naming the file for a missing, truncated, corrupt or non-checkpoint file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, KeyError, IndexError, UnicodeDecodeError):
        # torch's restricted unpickler fails with these on text and other non-pickle files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint: either another kind of file, or a "
            "pickle holding Python objects besides tensors and plain containers (refused, "
            "since unpickling those can run code)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first_line = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt): {first_line}"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a dict of weights")
    return dict(obj)


def extract_state_dict(obj: Mapping[str, Any], path: str | os.PathLike = "<checkpoint>") -> dict:
    """The tensor dict inside a loaded file: ours ("state_dict"), a training dump ("model",
    "state_dict", "state_dict_ema") or a bare state dict. Raises CheckpointError if none."""
    if obj.get("format") == OUR_FORMAT:
        return dict(obj["state_dict"])
    for key in ("state_dict", "model", "state_dict_ema"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _is_tensor_dict(inner):
            return dict(inner)
    if _is_tensor_dict(obj):
        return dict(obj)
    keys = ", ".join(list(map(str, obj))[:5])
    raise CheckpointError(f"{path}: no state dict of tensors found (top-level keys: {keys})")


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates owner-only files; give the checkpoint the usual umask permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
