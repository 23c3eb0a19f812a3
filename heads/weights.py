"""Weight loading for whole models: the seed's, timm's and our own files, detected by their keys.

Our models name their parameters `backbone.*` and `heads.<name>.*`. The seed's `Net` and timm's
`SelecSls` use `stem.*`, `features.*`, `head.*` and a classifier (`classifier.0.*` in the seed,
`fc.*` in timm); a fixed prefix table maps one onto the other, so conversion is exact both ways.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selecsls.backbones import BACKBONES
from selecsls.backbones.checkpoint import (
    OUR_FORMAT,
    CheckpointError,
    atomic_save,
    extract_state_dict,
    read_checkpoint,
)
from selecsls.backbones.hub import download_published, is_published, published_entry

from .model import Model, build_model, classifier_config

FORMATS = ("selecsls", "seed", "timm")

# (our prefix, seed prefix, timm prefix); order matters only for readability.
_PREFIXES = [
    ("backbone.stem.", "stem.", "stem."),
    ("backbone.features.", "features.", "features."),
    ("heads.classification.convs.", "head.", "head."),
    ("heads.classification.fc.", "classifier.0.", "fc."),
]


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """'selecsls', 'seed' or 'timm' from the key names of a state dict."""
    keys = set(state_dict)
    if any(k.startswith("backbone.") for k in keys):
        return "selecsls"
    if "fc.weight" in keys:
        return "timm"
    return "seed"  # also a seed-style file without a classifier (a bare backbone)


def convert_keys(state_dict: Mapping[str, Any], src: str, dst: str) -> dict[str, Any]:
    """Rename keys between formats ('selecsls', 'seed', 'timm'); keys outside the table raise."""
    for fmt in (src, dst):
        if fmt not in FORMATS:
            raise ValueError(f"unknown weight format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    i, j = FORMATS.index(src), FORMATS.index(dst)
    out = {}
    for key, value in state_dict.items():
        row = next((r for r in _PREFIXES if key.startswith(r[i])), None)
        if row is None:
            if src == dst:
                out[key] = value
                continue
            raise CheckpointError(f"key {key!r} has no {dst} equivalent")
        out[row[j] + key[len(row[i]) :]] = value
    return out


def resolve_source(source: str | os.PathLike) -> Path:
    """A published weight name (downloaded and cached on first use) or a file path."""
    if isinstance(source, str) and is_published(source):
        return download_published(source)
    return Path(source)


def read_model_file(source: str | os.PathLike) -> tuple[dict[str, Any], dict | None]:
    """(state dict in our key names, our model config or None) from any supported file."""
    path = resolve_source(source)
    obj = read_checkpoint(path)
    config = obj.get("config") if obj.get("format") == OUR_FORMAT else None
    state = extract_state_dict(obj, path)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DDP-wrapped saves
    state = convert_keys(state, detect_format(state), "selecsls")
    return state, config


def fit_problems(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and shape-mismatched keys of `state` against `model`, summarised."""
    expected = model.state_dict()
    # Files saved without BN's batch counter still load: it affects neither eval nor training.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = [
        _few(f"missing key{'s' * (len(missing) != 1)}", missing),
        _few(f"unexpected key{'s' * (len(unexpected) != 1)}", unexpected),
        _few(f"shape mismatch{'es' * (len(mismatched) != 1)}", mismatched),
    ]
    return [p for p in problems if p]


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise one CheckpointError listing missing, unexpected and shape-mismatched keys."""
    problems = fit_problems(model, state)
    if problems:
        name = getattr(model, "config", {}).get("backbone", type(model).__name__)
        raise CheckpointError(f"{what} does not fit model {name}: " + "; ".join(problems))


def _few(label: str, items: list[str], shown: int = 3) -> str:
    if not items:
        return ""
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return f"{len(items)} {label} ({', '.join(items[:shown])}{more})"


def load_weights(model: nn.Module, source: str | os.PathLike) -> nn.Module:
    """Load any supported file (or published name) into `model` strictly; returns the model."""
    state, _ = read_model_file(source)
    check_fit(model, state, str(source))
    model.load_state_dict(state, strict=False)  # check_fit already enforced the strict contract
    return model


def infer_classifier_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The seed classifier config whose parameter shapes match a state dict (seed/timm files
    name no architecture). Raises CheckpointError when no configuration matches."""
    fc = state.get("heads.classification.fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None else 1000
    for name in BACKBONES:
        config = classifier_config(name, num_classes)
        if fc is None:  # a bare backbone file
            config["heads"] = {}
        with torch.device("meta"):  # shapes only, no memory or init cost
            candidate = build_model(config)
        if not fit_problems(candidate, state):
            return config
    raise CheckpointError(
        f"the weights match none of the SelecSLS configurations ({', '.join(BACKBONES)})"
    )


def load_model(source: str | os.PathLike, name: str | None = None) -> Model:
    """Build and load a model from a file or published name alone.

    Our checkpoints carry their config; for seed/timm files the architecture is the published
    entry's, `name` if given, or inferred from the parameter shapes.
    """
    state, config = read_model_file(source)
    if config is None:
        if name is None and isinstance(source, str) and is_published(source):
            name = published_entry(source).backbone
        if name is not None:
            fc = state.get("heads.classification.fc.weight")
            config = classifier_config(name, int(fc.shape[0]) if fc is not None else 1000)
        else:
            config = infer_classifier_config(state)
    model = build_model(config)
    check_fit(model, state, str(source))
    model.load_state_dict(state, strict=False)
    return model


def save_model(model: Model, path: str | os.PathLike, **extra: Any) -> Path:
    """Write our format atomically: {"format", "version", "config", "state_dict", **extra}."""
    payload = {
        "format": OUR_FORMAT,
        "version": 1,
        "config": model.config,
        "state_dict": model.state_dict(),
        **extra,
    }
    return atomic_save(payload, path)


def export_state_dict(model: Model, fmt: str) -> dict[str, torch.Tensor]:
    """The model's weights keyed for `fmt` ('selecsls', 'seed' or 'timm')."""
    return convert_keys(model.state_dict(), "selecsls", fmt)
