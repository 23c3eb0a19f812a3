"""Run output on rank 0: tqdm progress, TensorBoard scalars and images, summary.csv per epoch.

Other ranks get a RunLog whose methods do nothing, so the trainer never branches on rank.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm


class RunLog:
    """Writes into out_dir: tb/ (TensorBoard events) and summary.csv (one row per epoch)."""

    def __init__(self, out_dir: str | Path, enabled: bool, progress: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled, self.progress = enabled, progress and enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # import cost only on rank 0

            self.writer = SummaryWriter(str(self.out_dir / "tb"))

    def bar(self, total: int, desc: str) -> tqdm:
        """A progress bar (disabled off rank 0 or with run.progress=false)."""
        return tqdm(
            total=total,
            desc=desc,
            disable=not self.progress,
            dynamic_ncols=True,
            leave=True,
            file=sys.stdout,
            mininterval=1.0,
        )

    def print(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stdout)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def images(self, tag: str, images: torch.Tensor | None, step: int) -> None:
        """(N, 3, H, W) floats in [0, 1]."""
        if self.writer is not None and images is not None and len(images):
            self.writer.add_images(tag, images.clamp(0, 1).cpu(), step)

    def summary_row(self, row: dict[str, Any]) -> None:
        """Append to summary.csv, writing the header first; later rows may add no new columns."""
        if not self.enabled:
            return
        path = self.out_dir / "summary.csv"
        new = not path.is_file()
        fields = list(row) if new else _header(path)
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, "")) for k in fields})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
