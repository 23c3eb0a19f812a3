"""Published ImageNet weights by name, downloaded once into a cache folder (torch.hub layout).

Names are `<backbone>.<source>`: the seed repo's five files and timm's three. timm's file names
carry the first 8 hex digits of the file's SHA-256 (torch.hub's convention) and are checked on
download; the seed published no hashes, so its files are checked by loading them into the
architecture they are named for (`selecsls.heads.weights`), and a file that fails is deleted.
Set SELECSLS_WEIGHTS_MIRROR to a folder URL (http://, file://) holding the same file names to
download from a mirror instead of the original hosts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError

_SEED = "http://gvv.mpi-inf.mpg.de/projects/XNect/assets/models/"
_TIMM = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-selecsls/"


@dataclass(frozen=True)
class Published:
    """One published weight file and the ImageNet-val accuracy its authors report."""

    backbone: str
    url: str
    top1: float
    top5: float
    note: str


# Seed accuracies are 100 - the errors in the seed README (bilinear resize at evaluation);
# timm's are from timm's model index (bicubic, crop 0.875, 224 px).
PUBLISHED: dict[str, Published] = {
    "selecsls60.seed": Published(
        "selecsls60", _SEED + "SelecSLS60_statedict.pth", 76.2, 93.0, "seed, original"
    ),
    "selecsls84.seed": Published(
        "selecsls84", _SEED + "SelecSLS84_statedict.pth", 76.7, 93.1, "seed, original"
    ),
    "selecsls42b.seed": Published(
        "selecsls42b", _SEED + "SelecSLS42_B_statedict.pth", 77.1, 93.4, "seed, timm-trained"
    ),
    "selecsls60.seed_better": Published(
        "selecsls60", _SEED + "SelecSLS60_statedict_better.pth", 77.9, 93.9, "seed, timm-trained"
    ),
    "selecsls60b.seed": Published(
        "selecsls60b", _SEED + "SelecSLS60_B_statedict.pth", 78.4, 94.2, "seed, timm-trained"
    ),
    "selecsls42b.timm": Published(
        "selecsls42b", _TIMM + "selecsls42b-8af30141.pth", 77.18, 93.39, "timm"
    ),
    "selecsls60.timm": Published(
        "selecsls60", _TIMM + "selecsls60-bbf87526.pth", 77.99, 93.83, "timm"
    ),
    "selecsls60b.timm": Published(
        "selecsls60b", _TIMM + "selecsls60b-94e619b5.pth", 78.41, 94.18, "timm"
    ),
}

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.pth$")


def cache_dir() -> Path:
    """$SELECSLS_CACHE if set, else torch.hub's folder (~/.cache/torch/hub/checkpoints)."""
    env = os.environ.get("SELECSLS_CACHE")
    return Path(env) if env else Path(torch.hub.get_dir()) / "checkpoints"


def is_published(name: str) -> bool:
    return str(name) in PUBLISHED


def published_entry(name: str) -> Published:
    """The table row of a published name; CheckpointError listing valid names if unknown."""
    if name not in PUBLISHED:
        raise CheckpointError(
            f"unknown published weights {name!r}; valid names: {', '.join(PUBLISHED)}"
        )
    return PUBLISHED[name]


def published_url(name: str) -> str:
    """The download URL of a published name, redirected to $SELECSLS_WEIGHTS_MIRROR if set."""
    entry = published_entry(name)
    mirror = os.environ.get("SELECSLS_WEIGHTS_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + entry.url.rsplit("/", 1)[1]
    return entry.url


def download_published(name: str, progress: bool = True) -> Path:
    """Path of the cached file for a published name, downloading it first if absent.

    The download goes to a temporary file and is renamed into the cache only when complete and,
    where the file name carries a hash, only when the hash matches.
    """
    url = published_url(name)
    filename = url.rsplit("/", 1)[1]
    dst = cache_dir() / filename
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_IN_NAME.search(filename)
    try:
        torch.hub.download_url_to_file(
            url, str(dst), hash_prefix=match.group(1) if match else None, progress=progress
        )
    except RuntimeError as err:  # torch.hub's hash mismatch
        dst.unlink(missing_ok=True)
        raise CheckpointError(
            f"{name}: download from {url} failed its integrity check: {err}"
        ) from None
    except OSError as err:  # URLError is an OSError
        raise CheckpointError(f"{name}: could not download {url}: {err}") from None
    return dst
