"""Markdown tables and the JSON record of `selecsls.tools.benchmark`.

Table layout follows the seed's speed table: one row per model (here model/mode), one column per
input size x batch size, milliseconds per forward pass. A second table gives the speed-up against
the baseline row (baseline median / row median: above 1 means faster than the baseline).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from selecsls.tools.bench.timing import Case, size_label, summarize
from selecsls.tools.deploy.precision import cpu_name
from selecsls.tools.engine.amp import cpu_has_bf16


def _columns(sizes: list[int], batches: list[int]) -> list[tuple[int, int]]:
    return [(s, b) for s in sizes for b in batches]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def forward_records(cases: list[Case], sizes: list[int], batches: list[int]) -> list[dict]:
    """One JSON record per (case, size, batch): raw timings and their summary, or an error."""
    records = []
    for case in cases:
        model, _, mode = case.label.partition("/")
        for size, batch in _columns(sizes, batches):
            rec = {"model": model, "mode": mode, "size": size, "batch": batch}
            times = case.times.get((size, batch))
            if times:
                rec.update(times_ms=times, **summarize(times))
            else:
                rec["error"] = case.errors.get((size, batch), "not run")
            records.append(rec)
    return records


def baseline_row(label: str, baseline: str, medians: dict[str, dict]) -> str | None:
    """The row a row is compared with: `baseline` as given when it names a mode
    ("resnet50/bf16"), else the baseline model in the row's own mode, else its first mode."""
    if "/" in baseline:
        return baseline if baseline in medians else None
    same_mode = f"{baseline}/{label.partition('/')[2]}"
    if same_mode in medians:
        return same_mode
    return next((row for row in medians if row.partition("/")[0] == baseline), None)


STATS = ("median", "min")


def forward_tables(
    records: list[dict], sizes, batches, baseline: str | None, stat: str = "median"
) -> str:
    """Time table (`stat` ms, +- half the interquartile range as % of the median) and speed-up
    table (baseline's `stat` / row's `stat`)."""
    values: dict[str, dict] = {}
    spread: dict[str, dict] = {}
    for rec in records:
        row = f"{rec['model']}/{rec['mode']}"
        key = (rec["size"], rec["batch"])
        values.setdefault(row, {})[key] = rec.get(f"{stat}_ms")
        spread.setdefault(row, {})[key] = rec.get("error") or relative_spread(rec)
    cols = _columns(sizes, batches)
    header = ["model/mode"] + [f"{size_label(s)} b{b}" for s, b in cols]
    rows = []
    for row, cells in values.items():
        rows.append([row] + [_time_cell(cells[k], spread[row][k]) for k in cols])
    name = "median" if stat == "median" else "minimum over the repetitions"
    text = f"ms per forward pass ({name}; +- half the interquartile range)\n\n" + _table(
        header, rows
    )
    if baseline is not None:
        ratio_rows = []
        for row, cells in values.items():
            base = baseline_row(row, baseline, values)
            ratio_rows.append(
                [row] + [_ratio_cell(values.get(base, {}).get(k), cells[k]) for k in cols]
            )
        text += f"\n\nspeed-up vs {baseline} (its {stat} / row {stat}; > 1 is faster)\n\n"
        text += _table(header, ratio_rows)
    return text


def relative_spread(record: dict) -> float:
    """Half the interquartile range of a timed record, as a fraction of its median."""
    return (record["q3_ms"] - record["q1_ms"]) / 2 / record["median_ms"]


def spread_note(records: list[dict], limit: float = 0.10) -> str | None:
    """A warning when timings of some cells spread by more than +-`limit` (half the IQR over the
    median): the machine's speed changed during the run, so medians (and their ratios) mix
    fast and slow spells."""
    timed = [r for r in records if "median_ms" in r]
    wide = [r for r in timed if relative_spread(r) > limit]
    if not wide:
        return None
    return (
        f"{len(wide)} of {len(timed)} cells spread by more than +-{100 * limit:.0f}% (half the "
        "interquartile range): the machine's speed changed during the run (other load, or a busy "
        "neighbour on a shared core); rerun, or compare the undisturbed repetitions with --stat min"
    )


def fastest_table(
    records: list[dict], sizes, batches, baseline: str | None, stat: str = "median"
) -> str:
    """Per model, its fastest mode at each column (by `stat`), and the speed-up against the
    baseline model's fastest mode (the "both in their fastest mode" comparison)."""
    best: dict[str, dict] = {}
    for rec in records:
        key, ms = (rec["size"], rec["batch"]), rec.get(f"{stat}_ms")
        if ms is not None and (
            key not in best.setdefault(rec["model"], {}) or ms < best[rec["model"]][key][0]
        ):
            best[rec["model"]][key] = (ms, rec["mode"])
    cols = _columns(sizes, batches)
    header = ["model"] + [f"{size_label(s)} b{b}" for s, b in cols]
    rows = []
    base_best = best.get((baseline or "").partition("/")[0], {})
    for model, cells in best.items():
        row = [model]
        for k in cols:
            if k not in cells:
                row.append("-")
                continue
            ms, mode = cells[k]
            ratio = f", {base_best[k][0] / ms:.2f}x" if k in base_best else ""
            row.append(f"{ms:.1f} ({mode}{ratio})")
        rows.append(row)
    note = f"; x = speed-up vs {baseline.partition('/')[0]}'s fastest" if base_best else ""
    return f"fastest mode per model ({stat} ms (mode{note}))\n\n" + _table(header, rows)


def train_table(results: list[dict], baseline: str | None) -> str:
    """Training step time and peak memory, with ratios against the baseline model."""
    base = next((r for r in results if baseline and r["model"] == baseline.partition("/")[0]), None)
    header = ["model", "batch x size", "step ms (median +- IQR/2)", "images/s", "peak MiB"]
    header += ["params M"]
    if base and "error" not in base:
        header += [f"step speed-up vs {base['model']}", f"peak memory vs {base['model']}"]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["model"], "-", r["error"]] + ["-"] * (len(header) - 3))
            continue
        iqr = (r["q3_ms"] - r["q1_ms"]) / 2
        row = [r["model"], f"{r['batch']} x {r['size']}", f"{r['median_ms']:.0f} +- {iqr:.0f}"]
        row += [f"{1e3 * r['batch'] / r['median_ms']:.0f}"]
        row += [f"{r['peak_mb']:.0f}", f"{r['params_m']:.2f}"]
        if len(header) > 6:
            row += [
                f"{base['median_ms'] / r['median_ms']:.2f}x",
                f"{r['peak_mb'] / base['peak_mb']:.2f}x",
            ]
        rows.append(row)
    method = results[0].get("memory_method", "") if results else ""
    amp = results[0].get("amp", "fp32") if results else "fp32"
    precision = "bf16 autocast + channels_last" if amp == "bf16" else "fp32"
    if results and results[0].get("compile"):
        precision += ", torch.compile"
    return f"training step (SGD, {precision}; memory: {method})\n\n" + _table(header, rows)


def _time_cell(ms: float | None, spread) -> str:
    """`spread` is half the IQR as a fraction of the median, or the error text of the cell."""
    if ms is None:
        return str(spread)
    return f"{ms:.1f} +- {100 * spread:.0f}%"


def _ratio_cell(base_ms: float | None, ms: float | None) -> str:
    return "-" if base_ms is None or ms is None else f"{base_ms / ms:.2f}x"


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on, and how loaded the machine was."""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argv": sys.argv,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_has_bf16(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
