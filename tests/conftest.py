"""Shared test fixtures: the real sample data beside the checkout and small model helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

# Tests never touch the network: albumentations' update check on import is off for test modules
# that import it directly too (selecsls.datasets.augment sets the same for every other process).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The demo's `--precision auto` caches what it measured (tools/deploy/precision.py): tests keep
# theirs in a folder of their own (subprocesses inherit it), never in the user's ~/.cache.
os.environ["SELECSLS_CACHE_DIR"] = tempfile.mkdtemp(prefix="selecsls-test-cache-")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ALL_CONFIGS = [
    "selecsls42",
    "selecsls42b",
    "selecsls60",
    "selecsls60b",
    "selecsls84",
    "selecsls102",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED_DATA}")
    return SHARED_DATA


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics (in place), so that
    equivalence tests cannot pass by the accident of identity BN layers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


@pytest.fixture(scope="session")
def tiny_pose_set(tmp_path_factory) -> Path:
    """8 train + 4 val synthetic images (128x128, <= 2 people) in root/{train,val}; read-only:
    a test that changes files copies the folder first."""
    from selecsls.datasets.synthetic_people import generate

    root = tmp_path_factory.mktemp("tiny_pose_set")
    generate(root / "train", 8, seed=3, size=(128, 128), max_people=2)
    generate(root / "val", 4, seed=4, size=(128, 128), max_people=2)
    return root


def pose_data_section(root: Path) -> dict:
    """The `data` section of a pose config reading `tiny_pose_set`."""
    return {
        "root": str(root),
        "train_json": "train/annotations.json",
        "train_images": "train/images",
        "val_json": "val/annotations.json",
        "val_images": "val/images",
        "input_size": "128x128",
        "batch_size": 4,
        "eval_batch_size": 4,
    }
