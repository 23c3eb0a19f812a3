"""What pruning did: kept channels, parameters and MACs per stage, and the measured output change.

Used by `selecsls.tools.prune`; the functions take models, not files, so tests and notebooks can
call them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from selecsls.backbones.prune import KeepRule
from selecsls.tools.bench.flops import count_macs_by_module


@dataclass
class StageRow:
    """One line of the report: a stem, a backbone stage or a head."""

    name: str
    channels: int = 0
    kept: int = 0
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    blocks: list[int] = field(default_factory=list)


def stage_of(module_name: str, stage_of_block: dict[int, str]) -> str | None:
    """'stem', 'stage1'.., 'head:<name>' for a parameter or module name of our Model."""
    parts = module_name.split(".")
    if parts[:2] == ["backbone", "stem"]:
        return "stem"
    if parts[:2] == ["backbone", "features"] and len(parts) > 2:
        return stage_of_block[int(parts[2])]
    if parts[0] == "heads" and len(parts) > 1:
        return f"head:{parts[1]}"
    return None


def block_stages(model: nn.Module) -> dict[int, str]:
    """Block index -> 'stageK' (a stage starts at every first, strided block)."""
    stages, stage = {}, 0
    for index, block in enumerate(model.backbone.features):
        stage += int(block.is_first)
        stages[index] = f"stage{stage}"
    return stages


def stage_table(
    source: nn.Module, pruned: nn.Module, rule: KeepRule, size: tuple[int, int]
) -> list[StageRow]:
    """Per-stage kept/total conv-BN channels, parameters and MACs (per image at `size`)."""
    stages = block_stages(source)
    rows: dict[str, StageRow] = {}

    def row(name: str | None) -> StageRow | None:
        if name is None:
            return None
        return rows.setdefault(name, StageRow(name))

    for name, module in source.named_modules():
        if isinstance(module, nn.BatchNorm2d) and (r := row(stage_of(name, stages))) is not None:
            r.channels += module.num_features
            r.kept += int(rule.keep(module.weight.detach().float()).sum())
    for model, attr in ((source, "params_before"), (pruned, "params_after")):
        for name, param in model.named_parameters():
            if (r := row(stage_of(name, stages))) is not None:
                setattr(r, attr, getattr(r, attr) + param.numel())
    for model, attr in ((source, "macs_before"), (pruned, "macs_after")):
        for name, macs in count_macs_by_module(model, size).items():
            if (r := row(stage_of(name, stages))) is not None:
                setattr(r, attr, getattr(r, attr) + macs)
    return list(rows.values())


def format_table(rows: list[StageRow]) -> str:
    """The table as aligned text, with a total line."""
    total = StageRow("total")
    for r in rows:
        for attr in ("channels", "kept", "params_before", "params_after"):
            setattr(total, attr, getattr(total, attr) + getattr(r, attr))
        total.macs_before += r.macs_before
        total.macs_after += r.macs_after
    header = f"{'part':<22}{'channels kept':>16}{'params before':>15}{'after':>9}"
    header += f"{'GMACs before':>14}{'after':>9}{'ratio':>7}"
    lines = [header, "-" * len(header)]
    for r in [*rows, total]:
        ratio = r.macs_after / r.macs_before if r.macs_before else float("nan")
        lines.append(
            f"{r.name:<22}{f'{r.kept}/{r.channels}':>16}{_count(r.params_before):>15}"
            f"{_count(r.params_after):>9}{r.macs_before / 1e9:>14.3f}{r.macs_after / 1e9:>9.3f}"
            f"{ratio:>7.2f}"
        )
    return "\n".join(lines)


def _count(n: int) -> str:
    """896 -> '896', 75_904 -> '75.9K', 1_160_000 -> '1.16M'."""
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def removed_nonzero_gammas(model: nn.Module, rule: KeepRule) -> tuple[int, float]:
    """(count, max |gamma|) of channels removed although their gamma is not exactly zero: the
    channels for which pruning is approximate."""
    count, largest = 0, 0.0
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            gamma = module.weight.detach().float()
            approx = ~rule.keep(gamma) & (gamma != 0)
            gamma = gamma.abs()
            count += int(approx.sum())
            if approx.any():
                largest = max(largest, float(gamma[approx].max()))
    return count, largest


@torch.no_grad()
def output_difference(
    source: nn.Module, pruned: nn.Module, images: torch.Tensor
) -> dict[str, tuple[float, float]]:
    """{output key: (max |difference|, max |difference| / max |source output|)} on `images`."""
    source_out, pruned_out = source.eval()(images), pruned.eval()(images)
    result = {}
    for key, value in source_out.items():
        diff = float((value - pruned_out[key]).abs().max())
        scale = float(value.abs().max())
        result[key] = (diff, diff / scale if scale > 0 else float("inf") if diff else 0.0)
    return result
