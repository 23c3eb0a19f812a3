"""ImageNet folders: robust decoding, transforms, and tools/eval.py on the real sample images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selecsls.datasets.imagenet import ImageFolder, collate, read_class_index
from selecsls.datasets.transforms import (
    EvalTransform,
    TrainTransform,
    normalize_batch,
    random_erasing,
)
from selecsls.heads import build_classifier, save_model
from selecsls.tools._cli import run_cli
from selecsls.tools.eval import main as eval_main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE = DATA / "imagenet_sample" / "val"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared/data not beside the repo")


def odd_images(root: Path) -> Path:
    """root/<class>/ with a grayscale JPEG, a CMYK JPEG, a PNG named .JPEG, a truncated JPEG
    and a file of garbage bytes."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    a, b = root / "n001", root / "n002"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    Image.fromarray(pixels[..., 0]).save(a / "gray.JPEG", "JPEG")
    Image.fromarray(pixels).convert("CMYK").save(a / "cmyk.JPEG", "JPEG")
    Image.fromarray(pixels).save(b / "png_inside.JPEG", "PNG")
    Image.fromarray(pixels).save(b / "good.JPEG", "JPEG", quality=90)
    full = (b / "good.JPEG").read_bytes()
    (b / "truncated.JPEG").write_bytes(full[: len(full) // 3])
    (a / "garbage.JPEG").write_bytes(rng.integers(0, 255, 500, dtype=np.uint8).tobytes())
    (a / "notes.txt").write_text("not an image")
    return root


def test_odd_files_decode_or_are_skipped_and_counted(tmp_path):
    root = odd_images(tmp_path / "val")
    for transform in (EvalTransform(32, 0.875), TrainTransform(32)):
        dataset = ImageFolder(root, transform)
        assert dataset.classes == ["n001", "n002"] and len(dataset) == 6  # .txt ignored
        with pytest.warns(UserWarning, match="skipping unreadable image"):
            items = [dataset[i] for i in range(len(dataset))]
        names = [Path(p).name for p, _ in dataset.samples]
        bad = {names[i] for i, item in enumerate(items) if item is None}
        assert bad == {"garbage.JPEG", "truncated.JPEG"}
        batch = collate(items)
        assert batch["skipped"] == 2
        assert batch["images"].shape == (4, 3, 32, 32) and batch["images"].dtype == torch.uint8
        gray = items[names.index("gray.JPEG")][0]
        assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_missing_folder_and_class_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nope", EvalTransform(32))
    root = odd_images(tmp_path / "val")
    index = tmp_path / "classes.tsv"
    index.write_text("wnid\tname\nn000\tzero\nn001\tone\nn002\ttwo\n")
    assert read_class_index(index) == ["n000", "n001", "n002"]
    dataset = ImageFolder(root, EvalTransform(32), index)
    assert sorted({label for _, label in dataset.samples}) == [1, 2]
    index.write_text("n001\n")
    with pytest.raises(ValueError, match="n002"):
        ImageFolder(root, EvalTransform(32), index)


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    # a 200 x 100 image whose left and right quarters are black: crop_pct 1.0 keeps the centre
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, 50:150] = 255
    out = EvalTransform(50, crop_pct=1.0, interpolation="bilinear")(Image.fromarray(pixels))
    assert out.shape == (3, 50, 50) and out.min() > 200
    out = EvalTransform(50, crop_pct=0.5, interpolation="bicubic")(Image.fromarray(pixels))
    assert out.shape == (3, 50, 50) and out.float().mean() > 200  # 100 px short side, centre 50


def test_train_transform_and_device_steps_are_random_but_seeded():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), np.uint8))
    transform = TrainTransform(24, scale=(0.2, 1.0), color_jitter=0.4)
    torch.manual_seed(0)
    import random

    random.seed(0)
    first = transform(image.copy())
    random.seed(0)
    assert torch.equal(first, transform(image.copy()))
    assert not torch.equal(first, transform(image.copy()))
    batch = normalize_batch(torch.stack([first] * 4), (0.5,) * 3, (0.25,) * 3)
    assert torch.allclose(batch[0, :, 0, 0], (first[:, 0, 0] / 255 - 0.5) / 0.25)
    erased = random_erasing(batch.clone(), prob=1.0, generator=torch.Generator().manual_seed(0))
    assert (erased != batch).flatten(1).any(1).all()  # every image got a rectangle


@needs_sample
def test_eval_logits_equal_model_forward_on_same_tensors(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_classifier("selecsls42b", num_classes=1000).eval()
    ckpt = save_model(model, tmp_path / "model.pt")
    logits_file, json_file = tmp_path / "logits.npy", tmp_path / "result.json"
    argv = [
        str(ckpt),
        "--data",
        str(SAMPLE),
        "--image-size",
        "64",
        "--crop-pct",
        "0.875",
        "--interpolation",
        "bilinear",
        "--batch-size",
        "16",
        "--workers",
        "0",
        "--class-index",
        str(DATA / "imagenet_classes.tsv"),
        "--json",
        str(json_file),
        "--dump-logits",
        str(logits_file),
    ]
    assert run_cli(eval_main, argv) == 0
    result = json.loads(json_file.read_text())
    assert result["images"] == 100 and result["skipped"] == 0 and result["images_per_s"] > 0
    assert 0 <= result["top1"] <= result["top5"] <= 100
    assert result["top1_err"] == pytest.approx(100 - result["top1"])
    logits = np.load(logits_file)
    assert logits.dtype == np.float32 and logits.shape == (100, 1000)

    # The same images, preprocessed one by one and run through the model's own forward.
    dataset = ImageFolder(
        SAMPLE, EvalTransform(64, 0.875, "bilinear"), DATA / "imagenet_classes.tsv"
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    rows = [0, 37, 99]
    with torch.no_grad():
        images = torch.stack([(dataset[i][0].float() / 255 - mean) / std for i in rows])
        expected = model(images)["logits"].numpy()
    np.testing.assert_allclose(logits[rows], expected, rtol=1e-4, atol=1e-4)
    labels = np.array([label for _, label in dataset.samples])
    assert labels[0] == 0 and labels[-1] == 990  # every tenth class of the standard index
    top1 = 100 * np.mean(logits.argmax(1) == labels)
    assert result["top1"] == pytest.approx(top1)


@needs_sample
def test_eval_on_partial_folder_without_class_index_is_an_error(tmp_path, capsys):
    ckpt = save_model(build_classifier("selecsls42b", 1000), tmp_path / "model.pt")
    assert run_cli(eval_main, [str(ckpt), "--data", str(SAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "100 class folders" in err and "--class-index" in err


def test_quickstart_digits_written_once_as_image_folders(tmp_path):
    pytest.importorskip("sklearn")
    from selecsls.datasets.digits import write_digits_folder

    root = write_digits_folder(tmp_path / "digits")
    train = ImageFolder(root / "train", EvalTransform(16, 1.0))
    val = ImageFolder(root / "val", EvalTransform(16, 1.0), train.classes)
    assert train.classes == [str(d) for d in range(10)]
    assert (len(train), len(val)) == (1438, 359)  # 1797 digits, stratified 80/20
    assert not {Path(p).name for p, _ in train.samples} & {Path(p).name for p, _ in val.samples}
    with Image.open(train.samples[0][0]) as image:
        assert image.size == (8, 8) and image.mode == "L"
    stamp = (root / "train" / "0").stat().st_mtime_ns
    write_digits_folder(root)  # present: left alone
    assert (root / "train" / "0").stat().st_mtime_ns == stamp
