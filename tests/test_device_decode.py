"""data.device_decode: JPEGs decoded and augmented on the training device give exactly the
workers' images for the same random draws (checked here on the CPU device; on CUDA the decoder
is nvJPEG), mixed batches keep every label with its image, and training runs the same."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from selecsls.datasets.device_decode import (
    Deferred,
    DeferredTrainTransform,
    augment_on_device,
    collate_deferred,
    materialize,
)
from selecsls.datasets.imagenet import ImageFolder
from selecsls.datasets.transforms import TrainTransform
from selecsls.tools.engine.trainer import Trainer
from tests.test_engine_train import experiment, params

CPU = torch.device("cpu")
BICUBIC = TF.InterpolationMode.BICUBIC


def jpeg(pixels: np.ndarray, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def photos() -> list[bytes]:
    rng = np.random.default_rng(0)
    sizes = ((500, 375), (333, 500), (64, 48), (40, 40))
    found = [jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    found.append(jpeg(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), "L"))  # grayscale
    return found


@pytest.mark.parametrize("jitter", [0.0, 0.4])
def test_device_path_equals_the_workers_jpeg_path(jitter):
    workers = TrainTransform(48, color_jitter=jitter)
    deferred = DeferredTrainTransform(48, color_jitter=jitter)
    for n, data in enumerate(photos()):
        random.seed(n)
        want = workers.from_jpeg_bytes(data)
        random.seed(n)
        item = deferred.from_jpeg_bytes(data, source=f"photo {n}")
        assert isinstance(item, Deferred) and item.source == f"photo {n}"
        got, kept = augment_on_device([item], 48, BICUBIC, CPU)
        assert kept == [0] and got.dtype == torch.uint8
        assert torch.equal(got[0], want), n


def test_imagenet_samples_equal_on_the_device_path(shared_data):
    files = sorted((shared_data / "imagenet_sample").rglob("*.JPEG"))[:4]
    if not files:
        pytest.skip("no ImageNet sample JPEGs")
    workers, deferred = TrainTransform(64), DeferredTrainTransform(64)
    for n, path in enumerate(files):
        random.seed(n)
        want = workers.from_jpeg_bytes(path.read_bytes())
        random.seed(n)
        item = deferred.from_jpeg_bytes(path.read_bytes())
        if not isinstance(item, Deferred):  # a CMYK or PNG sample: the workers' path already
            assert torch.equal(item, want)
            continue
        assert torch.equal(augment_on_device([item], 64, BICUBIC, CPU)[0][0], want), path


def colour_folder(root) -> dict[int, str]:
    """root/train/c<k>/ with one flat-coloured file each: a JPEG, a PNG named .JPEG, a CMYK JPEG,
    a JPEG whose data is corrupt past its header. -> {class: kind}."""
    kinds = {0: "jpeg", 1: "png", 2: "cmyk", 3: "corrupt"}
    for k, kind in kinds.items():
        folder = root / "train" / f"c{k}"
        folder.mkdir(parents=True)
        pixels = np.full((40, 56, 3), 40 + 50 * k, np.uint8)
        if kind == "png":
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            data = buffer.getvalue()
        else:
            data = jpeg(pixels, "CMYK" if kind == "cmyk" else "RGB")
        if kind == "corrupt":
            data = data[:200] + bytes(64)
        (folder / "0.JPEG").write_bytes(data)
    return kinds


def test_mixed_batch_keeps_labels_with_their_images(tmp_path):
    colour_folder(tmp_path)
    dataset = ImageFolder(tmp_path / "train", DeferredTrainTransform(24, color_jitter=0.0))
    items = [dataset[i] for i in range(len(dataset))] + [None]  # None: a file that did not read
    kinds = [type(item[0]).__name__ for item in items[:-1]]
    assert kinds == ["Deferred", "Tensor", "Tensor", "Deferred"]  # PNG and CMYK: the CPU path
    batch = collate_deferred(items)
    with pytest.warns(UserWarning, match=r"unreadable image .*c3.0\.JPEG"):
        out = materialize(batch, 24, BICUBIC, CPU)
    assert out["images"].shape == (3, 3, 24, 24) and out["skipped"] == 2
    assert sorted(out["labels"].tolist()) == [0, 1, 2]
    for image, label in zip(out["images"], out["labels"]):
        # flat images stay flat through crop, flip and resize: the colour tells the class
        assert abs(image.float().mean().item() - (40 + 50 * label.item())) < 6


def test_all_unreadable_batch_is_empty_not_an_error(tmp_path):
    colour_folder(tmp_path)
    dataset = ImageFolder(tmp_path / "train", DeferredTrainTransform(24))
    with pytest.warns(UserWarning, match="unreadable"):
        out = materialize(collate_deferred([dataset[3]]), 24, BICUBIC, CPU)
    assert out["images"].shape == (0, 3, 24, 24) and len(out["labels"]) == 0
    assert out["skipped"] == 1


def test_training_with_device_decode_equals_the_workers_path(tmp_path):
    # the same random draws in the same order, the same crops: the weights end bit for bit equal
    task, config = experiment(tmp_path, "workers")
    Trainer(task, config).fit()
    task, config = experiment(tmp_path, "device", ["data.device_decode=true"])
    metrics = Trainer(task, config).fit()
    assert metrics["images"] == 6
    a, b = params(tmp_path / "workers" / "last.pt"), params(tmp_path / "device" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_decode_refuses_a_setting_it_cannot_follow(tmp_path):
    with pytest.raises(ValueError, match="device_decode needs data.fast_decode"):
        task, _ = experiment(tmp_path, "bad", ["data.device_decode=true", "data.fast_decode=false"])
        task.check()
    with pytest.raises(ValueError, match="lanczos"):
        task, _ = experiment(
            tmp_path, "bad2", ["data.device_decode=true", "data.interpolation=lanczos"]
        )
        task.check()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decode_is_close_to_the_cpu_path():
    # nvJPEG's inverse DCT and colour conversion differ from libjpeg-turbo's by a grey level or
    # so: close, not equal
    deferred, cuda = DeferredTrainTransform(64), torch.device("cuda")
    items = []
    for n, data in enumerate(photos()):
        random.seed(n)
        items.append(deferred.from_jpeg_bytes(data))
    got, kept = augment_on_device(items, 64, BICUBIC, cuda)
    want, _ = augment_on_device(items, 64, BICUBIC, CPU)
    assert got.device.type == "cuda" and kept == list(range(len(items)))
    difference = (got.cpu().float() - want.float()).abs()
    assert difference.mean() < 2 and difference.max() < 64
