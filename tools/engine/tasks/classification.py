"""Image classification (ImageNet, the quickstart digits): SelecSLS + its classification head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from selecsls.backbones import canonical_name
from selecsls.backbones.checkpoint import CheckpointError
from selecsls.datasets.device_decode import DeferredTrainTransform, collate_deferred, materialize
from selecsls.datasets.digits import write_digits_folder
from selecsls.datasets.imagenet import ImageFolder, collate, read_class_index
from selecsls.datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    EvalTransform,
    TrainTransform,
    normalize_batch,
    random_erasing,
)
from selecsls.heads import build_model, classifier_config
from selecsls.heads.weights import read_model_file

from ..config import Field, Schema
from ..distributed import DistInfo, reduce_sums
from .base import EvalContext, Task, check_weights

INTERP = tuple(INTERPOLATIONS)

SCHEMA: Schema = {
    "model": {
        "backbone": Field("selecsls60", "str", help="any spelling: SelecSLS60_B, selecsls60b"),
        "num_classes": Field(None, "int", optional=True, help="default: classes in the data"),
        "weights": Field(None, "str", optional=True, help="file or published name to start from"),
    },
    "data": {
        "prepare": Field("none", "choice", ("none", "digits"), help="write a built-in dataset"),
        "root": Field("data/imagenet", "path"),
        "train_dir": Field("train", "str"),
        "val_dir": Field("val", "str"),
        "class_index": Field(None, "path", optional=True),
        "image_size": Field(224, "int"),
        "crop_pct": Field(0.875, "float"),
        "interpolation": Field("bicubic", "choice", INTERP),
        "scale": Field([0.08, 1.0], "floats"),
        "ratio": Field([0.75, 1.3333333], "floats"),
        "hflip": Field(0.5, "float"),
        "color_jitter": Field(0.4, "float"),
        "random_erasing": Field(0.0, "float"),
        "mean": Field(list(IMAGENET_MEAN), "floats"),
        "std": Field(list(IMAGENET_STD), "floats"),
        "fast_decode": Field(True, "bool", help="JPEG draft decoding for training crops"),
        "device_decode": Field(
            False,
            "bool",
            help="decode training JPEGs and augment them on the training device (batched nvJPEG "
            "on CUDA); the workers only read files. For GPU machines whose loader bounds "
            "training (docs/training.md)",
        ),
    },
    "loss": {
        "label_smoothing": Field(0.1, "float"),
    },
}


class ClassificationTask(Task):
    name = "classification"
    schema = SCHEMA
    best_metric = "top1"
    best_mode = "max"
    min_batch_size = 2  # the head's BatchNorm runs on pooled (N, C, 1, 1) features

    def _folder(self, split: str) -> Path:
        data = self.config["data"]
        return Path(data["root"]) / data[f"{split}_dir"]

    def check(self) -> None:
        data, model = self.config["data"], self.config["model"]
        try:
            canonical_name(model["backbone"])
        except ValueError as err:
            raise ValueError(f"model.backbone: {err}") from None
        if data["prepare"] == "none":
            for split in ("train", "val"):
                if not self._folder(split).is_dir():
                    raise FileNotFoundError(
                        f"data.root/data.{split}_dir: folder {self._folder(split)} does not exist"
                    )
        if data["class_index"] and not Path(data["class_index"]).is_file():
            raise FileNotFoundError(f"data.class_index: file {data['class_index']} does not exist")
        check_weights(model["weights"])
        if data["batch_size"] < self.min_batch_size:
            raise ValueError(
                f"data.batch_size: {data['batch_size']} is too small; the classifier's head "
                f"normalises pooled features over the batch and needs >= {self.min_batch_size}"
            )
        if data["device_decode"] and (
            not data["fast_decode"] or data["interpolation"] == "lanczos"
        ):
            raise ValueError(
                "data.device_decode needs data.fast_decode: true and an interpolation the "
                f"device resizes with (not lanczos); got fast_decode {data['fast_decode']}, "
                f"interpolation {data['interpolation']}"
            )
        for key, pair in (("scale", data["scale"]), ("ratio", data["ratio"])):
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ValueError(f"data.{key} must be [low, high], got {pair}")

    def prepare_data(self) -> None:
        if self.config["data"]["prepare"] == "digits":
            write_digits_folder(self.config["data"]["root"])

    def num_classes(self) -> int:
        cfg = self.config
        if cfg["model"]["num_classes"]:
            return cfg["model"]["num_classes"]
        if cfg["data"]["class_index"]:
            return len(read_class_index(cfg["data"]["class_index"]))
        return sum(1 for d in self._folder("train").iterdir() if d.is_dir())

    def build_model(self) -> nn.Module:
        model = build_model(classifier_config(self.config["model"]["backbone"], self.num_classes()))
        if self.config["model"]["weights"]:
            load_pretrained(model, self.config["model"]["weights"])
        return model

    def build_datasets(self) -> tuple[ImageFolder, ImageFolder]:
        data = self.config["data"]
        transform = DeferredTrainTransform if data["device_decode"] else TrainTransform
        train_tf = transform(
            data["image_size"],
            data["scale"],
            data["ratio"],
            data["hflip"],
            data["color_jitter"],
            data["interpolation"],
            data["fast_decode"],
        )
        eval_tf = EvalTransform(data["image_size"], data["crop_pct"], data["interpolation"])
        index = data["class_index"]
        train = ImageFolder(self._folder("train"), train_tf, index)
        val = ImageFolder(self._folder("val"), eval_tf, index or train.classes)
        self.classes = train.classes
        return train, val

    def checkpoint_extra(self) -> dict[str, Any]:
        # tools/eval.py maps a folder's class names onto the model's outputs with this list.
        return {"classes": list(getattr(self, "classes", []))}

    def collate(self, items: list) -> dict[str, Any]:
        return collate_deferred(items) if self.config["data"]["device_decode"] else collate(items)

    def to_device(
        self, batch: dict[str, Any], device: torch.device, train: bool, channels_last: bool
    ) -> dict[str, Any]:
        data = self.config["data"]
        if "deferred" in batch:  # data.device_decode: decode and augment the JPEGs there
            mode = TF.InterpolationMode(data["interpolation"])
            batch = materialize(batch, data["image_size"], mode, device)
        images = normalize_batch(
            batch["images"].to(device, non_blocking=True), data["mean"], data["std"]
        )
        if train and data["random_erasing"] > 0:
            images = random_erasing(images, data["random_erasing"])
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return {**batch, "images": images, "labels": batch["labels"].to(device, non_blocking=True)}

    def batch_size(self, batch: dict[str, Any]) -> int:
        return int(batch["labels"].shape[0])

    def losses(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = model(batch["images"])["logits"]
        smoothing = self.config["loss"]["label_smoothing"]
        return {"loss": F.cross_entropy(logits.float(), batch["labels"], label_smoothing=smoothing)}

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        info: DistInfo,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        ctx: EvalContext | None = None,
    ) -> dict[str, float]:
        sums = {"n": 0.0, "top1": 0.0, "top5": 0.0, "loss": 0.0, "skipped": 0.0}
        for batch, logits in predict(self, model, loader, info.device, amp_dtype, channels_last):
            labels = batch["labels"]
            sums["skipped"] += batch["skipped"]
            if not len(labels):
                continue
            c1, c5 = topk_correct(logits, labels)
            sums["n"] += len(labels)
            sums["top1"] += c1
            sums["top5"] += c5
            sums["loss"] += F.cross_entropy(logits, labels, reduction="sum").item()
        return summarize(reduce_sums(sums, info))

    def preview_images(self, batch: dict[str, Any]) -> torch.Tensor:
        if "deferred" in batch:
            few = {**batch, "deferred": batch["deferred"][:8]}
            mode = TF.InterpolationMode(self.config["data"]["interpolation"])
            batch = materialize(few, self.config["data"]["image_size"], mode, torch.device("cpu"))
        return batch["images"][:8].float() / 255


def predict(
    task: Task,
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
    """(batch on device, float32 logits (N, classes)) for each batch, in loader order."""
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = task.to_device(batch, device, train=False, channels_last=channels_last)
            if not len(batch["labels"]):
                yield batch, torch.zeros(0, 0)
                continue
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                logits = model(batch["images"])["logits"]
            yield batch, logits.float()


def topk_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(top-1 hits, top-5 hits) of (N, C) logits against (N,) labels (top-5 = top-C if C < 5)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top == labels[:, None]
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum())


def summarize(sums: dict[str, float]) -> dict[str, float]:
    """Reduced sums -> {"top1", "top5" (percent), "top1_err", "top5_err", "loss", "images",
    "skipped"}."""
    n = max(sums["n"], 1.0)
    top1, top5 = 100 * sums["top1"] / n, 100 * sums["top5"] / n
    return {
        "top1": top1,
        "top5": top5,
        "top1_err": 100 - top1,
        "top5_err": 100 - top5,
        "loss": sums["loss"] / n,
        "images": int(sums["n"]),
        "skipped": int(sums["skipped"]),
    }


def load_pretrained(model: nn.Module, source: str) -> None:
    """Initialise from a file or published name; a classifier of another width is left at its
    random init (fine-tuning to a new label set), any other mismatch is an error."""
    state, _ = read_model_file(source)
    expected = model.state_dict()
    fc = [k for k in state if k.startswith("heads.classification.fc.")]
    new_classifier = any(k in expected and state[k].shape != expected[k].shape for k in fc)
    if new_classifier:
        print(f"note: {source}: classifier of another width, keeping it randomly initialised")
        state = {k: v for k, v in state.items() if k not in fc}
    missing = [
        k
        for k in expected
        if k not in state
        and not k.endswith("num_batches_tracked")
        and not (new_classifier and k.startswith("heads.classification.fc."))
    ]
    unexpected = [k for k in state if k not in expected]
    bad = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or bad:
        raise CheckpointError(
            f"model.weights={source} does not fit {model.config['backbone']}: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}, shape mismatches {bad[:3]}"
        )
    model.load_state_dict(state, strict=False)
