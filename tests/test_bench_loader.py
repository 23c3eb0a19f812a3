"""The loader benchmark writes an ImageNet-layout folder of realistic JPEGs and drains the real
training loader; no speed is asserted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from selecsls.datasets.imagenet import ImageFolder
from selecsls.tools.bench import loader


def test_synthetic_imagenet_layout_is_photo_like(tmp_path):
    total = loader.write_imagenet_layout(tmp_path, 12, classes=3)
    files = sorted((tmp_path / "train").rglob("*.JPEG"))
    assert len(files) == 12 and len({f.parent.name for f in files}) == 3
    assert 40e3 < total / 12 < 250e3  # near ImageNet's ~110 kB, not a flat image's few kB
    sizes = {cv2.imread(str(f)).shape[:2] for f in files}
    allowed = {(h, w) for w, h in loader.TYPICAL_SIZES}
    assert sizes <= allowed and len(sizes) > 1
    assert len(ImageFolder(tmp_path / "train", lambda image: image)) == 12


def test_loader_rate_and_a_too_small_folder(tmp_path):
    loader.write_imagenet_layout(tmp_path, 12, classes=2)
    rate = loader.loader_images_per_s(tmp_path, 0, 4, 32, 2, pin=False)
    assert np.isfinite(rate) and rate > 0
    with pytest.raises(ValueError, match="raise --images"):
        loader.loader_images_per_s(tmp_path, 0, 16, 32, 2, pin=False)
    with pytest.raises(ValueError, match="rounds"):
        loader.loader_images_per_s(tmp_path, 0, 4, 32, 0, pin=False)


def test_repeated_dataset_serves_whole_rounds_from_few_images():
    repeated = loader.Repeated(list("abc"), 7)
    assert len(repeated) == 7 and [repeated[i] for i in range(7)] == list("abcabca")


def test_window_spans_whole_bursts(tmp_path, monkeypatch):
    # 2 workers, 3 rounds: the clock runs from batch 2 to batch 8, i.e. 3 * 2 batches
    loader.write_imagenet_layout(tmp_path, 6, classes=2)
    ticks = iter([10.0, 13.0])
    monkeypatch.setattr(loader.time, "perf_counter", lambda: next(ticks))
    rate = loader.loader_images_per_s(tmp_path, 2, 2, 32, 3, pin=False)
    assert rate == 3 * 2 * 2 / 3.0


def test_cli_compares_the_loader_with_the_training_step(tmp_path, capsys):
    argv = ["--images", "16", "--workers", "0", "--batch", "4", "--rounds", "2", "--size", "32"]
    argv += ["--consumer", "selecsls42", "--reps", "1", "--device", "cpu"]
    assert loader.main(argv) == 0
    out = capsys.readouterr().out
    assert "loader,  0 workers:" in out and "selecsls42 training step" in out
    assert "bounds training" in out


def test_cli_times_the_device_decode_path(tmp_path, capsys):
    argv = ["--images", "16", "--workers", "0", "--batch", "4", "--rounds", "2", "--size", "32"]
    assert loader.main([*argv, "--device-decode", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "loader,  0 workers:" in out and "0 workers + decode on cpu:" in out
