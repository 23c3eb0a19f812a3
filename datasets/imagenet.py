"""ImageNet in the standard folder layout: root/<wnid>/<image>, class index = sorted wnids.

Decoding goes by the file's content, not its name (ImageNet has PNGs named .JPEG), and every
mode (grayscale, CMYK, palette, RGBA) is converted to RGB by the transforms. A file that cannot
be read or decoded is skipped with a warning and counted: `__getitem__` returns None for it and
`collate` drops it, reporting how many it dropped, so one bad file never stops a run.

A folder holding only some classes (e.g. a validation sample) indexes them in sorted order by
default; pass `class_index` (a file listing wnids in the model's class order, one per line or
the first column of a TSV with a `wnid` header) to use the model's 1000-class numbering.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

JPEG_MAGIC = b"\xff\xd8\xff"
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def read_class_index(path: str | os.PathLike) -> list[str]:
    """wnids in class-index order from a text file (one per line) or a TSV (first column)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class index file {path} does not exist")
    wnids = []
    for line in path.read_text().splitlines():
        first = line.split("\t")[0].split(",")[0].strip()
        if first and first.lower() not in ("wnid", "id", "class"):
            wnids.append(first)
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"class index file {path} lists a class twice")
    return wnids


class ImageFolder(Dataset):
    """Samples (path, class index) under root/<class>/; items are (image tensor, label, index).

    `transform` maps a PIL image to a tensor. Unreadable files give None (see `collate`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Image.Image], torch.Tensor],
        class_index: str | os.PathLike | list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        folders = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not folders:
            raise FileNotFoundError(f"image folder {self.root} has no class sub-folders")
        if class_index is None:
            self.classes = folders
        else:
            self.classes = (
                list(class_index)
                if isinstance(class_index, list)
                else read_class_index(class_index)
            )
            unknown = sorted(set(folders) - set(self.classes))
            if unknown:
                raise ValueError(
                    f"{self.root}: folders {', '.join(unknown[:5])} are not in the class index"
                )
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [
            (str(path), self.class_to_idx[folder])
            for folder in folders
            for path in sorted((self.root / folder).iterdir())
            if path.suffix.lower() in EXTENSIONS
        ]
        if not self.samples:
            raise FileNotFoundError(f"image folder {self.root} holds no images ({EXTENSIONS})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        path, label = self.samples[index]
        fast = getattr(self.transform, "fast_decode", False) and hasattr(
            self.transform, "from_jpeg_bytes"
        )
        try:
            data = Path(path).read_bytes()
            if fast and data[:3] == JPEG_MAGIC:  # by content: ImageNet has PNGs named .JPEG
                tensor = self.transform.from_jpeg_bytes(data, source=str(path))
            else:
                with Image.open(io.BytesIO(data)) as image:
                    tensor = self.transform(image)
        except DECODE_ERRORS as err:
            warnings.warn(f"skipping unreadable image {path}: {err}", stacklevel=2)
            return None
        return tensor, label, index


def collate(items: list[tuple[torch.Tensor, int, int] | None]) -> dict[str, torch.Tensor | int]:
    """Stack the readable items: {"images": (N, 3, H, W) uint8, "labels": (N,), "indices": (N,),
    "skipped": number of unreadable items dropped from this batch}."""
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        return {
            "images": torch.zeros(0, 3, 1, 1, dtype=torch.uint8),
            "labels": torch.zeros(0, dtype=torch.int64),
            "indices": torch.zeros(0, dtype=torch.int64),
            "skipped": skipped,
        }
    return {
        "images": torch.stack([item[0] for item in good]),
        "labels": torch.tensor([item[1] for item in good], dtype=torch.int64),
        "indices": torch.tensor([item[2] for item in good], dtype=torch.int64),
        "skipped": skipped,
    }
