"""The quickstart's built-in data: scikit-learn's 1797 real 8x8 handwritten digits, written
once as an image-folder tree (train/<digit>/*.png, val/<digit>/*.png) so that the quickstart runs
the same folder pipeline (decoding, grayscale conversion, crops, loaders) as ImageNet does.

The split is stratified and fixed (seeded), 80% train / 20% val. Writing happens into a
temporary folder that is renamed into place, so an interrupted first run never leaves half a
dataset behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DONE_MARKER = ".complete"


def write_digits_folder(root: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Create root/train/<d>/ and root/val/<d>/ with 8x8 grayscale PNGs, unless present."""
    root = Path(root)
    if (root / DONE_MARKER).is_file():
        return root
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the quickstart data comes from scikit-learn: pip install scikit-learn"
        ) from None
    digits = load_digits()
    # 0..16 intensities -> 0..255 grey levels (ink bright on black, as in the original scans)
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for label in range(10):
            indices = np.flatnonzero(digits.target == label)
            rng.shuffle(indices)
            n_val = round(len(indices) * val_fraction)
            for split, part in (("val", indices[:n_val]), ("train", indices[n_val:])):
                folder = tmp / split / str(label)
                folder.mkdir(parents=True, exist_ok=True)
                for i in sorted(part):
                    Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
        (tmp / DONE_MARKER).write_text("sklearn digits, 80/20 stratified split\n")
        if root.exists():
            shutil.rmtree(root)  # a stale, incomplete tree from an older run
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
