"""JPEG decode and the training augmentation on the training device (batched nvJPEG on CUDA).

On a GPU machine the data workers' JPEG decoding bounds ImageNet training: on the H200's host,
8 workers delivered 1105 images/s against the SelecSLS-60 step's 5396 (docs/benchmarks.md).
With `data.device_decode` the workers only read the file and draw the augmentation's random
numbers (`DeferredTrainTransform`: the crop box from the JPEG header, flip, jitter order and
factors, in `TrainTransform.from_jpeg_bytes`' order); the main process decodes the whole batch
at once on the device (`torchvision.io.decode_jpeg` on a list, nvJPEG on CUDA), resizes each
crop there and jitters the batch in one pass (`augment_on_device`, `transforms.jitter_batch`).
With the same random numbers the result equals `from_jpeg_bytes` on the CPU
(tests/test_device_decode.py).

Files that are not JPEGs, whose header cannot be read, or that the device cannot decode (CMYK
on nvJPEG, say) take the workers' or the CPU's path, so every file `ImageFolder` reads still
trains; one that no decoder reads is dropped and counted like `collate`'s unreadable files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from .transforms import TrainTransform, jitter_batch


@dataclass(frozen=True)
class Deferred:
    """One training JPEG, read but not decoded, with its augmentation drawn: crop (left, top,
    w, h) in the decoded image's pixels, flip, and the jitter (`transforms.draw_jitter`)."""

    data: torch.Tensor  # (B,) uint8, the file's bytes
    box: tuple[int, int, int, int]
    flip: bool
    jitter_ops: tuple[int, ...] = ()  # transforms.JITTER_OPS indices, in order
    jitter_factors: tuple[float, ...] = ()
    source: str = ""  # the file, named if it turns out unreadable


class DeferredTrainTransform(TrainTransform):
    """`TrainTransform` whose JPEG path leaves decoding to `augment_on_device`.

    `from_jpeg_bytes` returns a `Deferred` for a JPEG whose size its header gives; anything else
    gets the parent's full CPU transform (a uint8 tensor), so a batch may mix the two."""

    def from_jpeg_bytes(self, data: bytes, source: str = "") -> Deferred | torch.Tensor:
        if self.tensor_mode is None:  # lanczos: only PIL resizes with it
            return super().from_jpeg_bytes(data)
        try:
            with Image.open(io.BytesIO(data)) as image:  # reads the header, decodes nothing
                width, height = image.size
                if image.mode == "CMYK":  # nvJPEG cannot; the CPU path converts it
                    return super().from_jpeg_bytes(data)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return super().from_jpeg_bytes(data)
        box, flip, ops, factors = self.draw(width, height)
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return Deferred(raw, box, flip, tuple(ops), tuple(factors), source)


def augment_on_device(
    items: list[Deferred], size: int, mode: TF.InterpolationMode, device: torch.device
) -> tuple[torch.Tensor, list[int]]:
    """Decode `items` on `device` in one batched call and augment each as drawn.

    Returns (M, 3, size, size) uint8 on `device` and the positions in `items` that it holds
    (M <= len(items): a file no decoder reads is left out, with a warning)."""
    decoded = _decode_all(items, device)
    kept = [position for position, image in enumerate(decoded) if image is not None]
    if not kept:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8, device=device), kept
    crops = []
    for position in kept:  # crops differ in size: one resize each
        left, top, w, h = items[position].box
        image = TF.resized_crop(
            decoded[position], top, left, h, w, [size, size], mode, antialias=True
        )
        crops.append(image.flip(-1) if items[position].flip else image)
    images = torch.stack(crops)
    rows = [row for row, position in enumerate(kept) if items[position].jitter_ops]
    if rows:  # one call per step and op for the whole batch
        jittered = [items[kept[row]] for row in rows]
        ops = torch.tensor([item.jitter_ops for item in jittered])
        factors = torch.tensor([item.jitter_factors for item in jittered], dtype=torch.float64)
        images[rows] = jitter_batch(images[rows], ops, factors)
    return images, kept


def _decode_all(items: list[Deferred], device: torch.device) -> list[torch.Tensor | None]:
    """Every JPEG as (3, H, W) uint8 on `device`: one batched decode there, else one at a time,
    else on the CPU; None (with a warning naming the file) for one nothing decodes."""
    try:
        return list(_decode([item.data for item in items], device))
    except RuntimeError:
        pass  # one bad file fails the batched call: find it
    found: list[torch.Tensor | None] = []
    for item in items:
        image, message = None, ""
        for where in dict.fromkeys((device, torch.device("cpu"))):
            try:
                image = _decode([item.data], where)[0].to(device)
                break
            except RuntimeError as err:
                message = (str(err).strip().splitlines() or ["decode error"])[-1]
        if image is None:
            warnings.warn(f"skipping unreadable image {item.source}: {message}", stacklevel=3)
        found.append(image)
    return found


def _decode(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    with warnings.catch_warnings():  # torchvision 0.29's deprecation notice, on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)


def collate_deferred(items: list) -> dict:
    """`imagenet.collate` for a mix of decoded tensors and `Deferred` JPEGs: the decoded ones as
    there ("images", "labels", "indices"), the deferred ones as "deferred" (a list) with
    "deferred_labels" and "deferred_indices"; `materialize` merges them on the device."""
    from .imagenet import collate  # imagenet imports transforms; keep this module light

    good = [item for item in items if item is not None]
    deferred = [item for item in good if isinstance(item[0], Deferred)]
    batch = collate([item for item in good if not isinstance(item[0], Deferred)])
    batch["skipped"] = len(items) - len(good)
    batch["deferred"] = [item[0] for item in deferred]
    batch["deferred_labels"] = torch.tensor([item[1] for item in deferred], dtype=torch.int64)
    batch["deferred_indices"] = torch.tensor([item[2] for item in deferred], dtype=torch.int64)
    return batch


def materialize(batch: dict, size: int, mode: TF.InterpolationMode, device: torch.device) -> dict:
    """A `collate_deferred` batch -> "images" (N, 3, size, size) uint8 and "labels", "indices"
    (N,) on `device`, the deferred JPEGs decoded and augmented there; files nothing could decode
    are added to "skipped". A batch without deferred items only moves to the device."""
    images = batch["images"].to(device, non_blocking=True)
    labels = batch["labels"].to(device, non_blocking=True)
    indices = batch["indices"]
    deferred = batch.get("deferred") or []
    out = {key: value for key, value in batch.items() if not key.startswith("deferred")}
    if deferred:
        decoded, kept = augment_on_device(deferred, size, mode, device)
        # collate's empty placeholder (0, 3, 1, 1) does not concatenate with the crops
        images = decoded if len(images) == 0 else torch.cat([images, decoded])
        labels = torch.cat([labels, batch["deferred_labels"][kept].to(device, non_blocking=True)])
        indices = torch.cat([indices, batch["deferred_indices"][kept]])
        out["skipped"] = batch["skipped"] + len(deferred) - len(kept)
    return {**out, "images": images, "labels": labels, "indices": indices}
