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
        """Append to summary.csv. A row with new columns (e.g. the first evaluation when
        eval.every > 1) rewrites the file with the wider header, earlier rows left blank there."""
        if not self.enabled:
            return
        path = self.out_dir / "summary.csv"
        rows = _read_rows(path) if path.is_file() else []
        fields = list(rows[0]) if rows else []
        fields += [k for k in row if k not in fields]
        if rows and len(fields) == len(rows[0]):  # same columns: a plain append
            with path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields).writerow(_formatted(row, fields))
            return
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(_formatted(r, fields) for r in [*rows, row])
        tmp.replace(path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _formatted(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: _fmt(row.get(k, "")) for k in fields}


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
