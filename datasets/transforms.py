"""Image transforms for classification: PIL in, uint8 CHW tensor out; normalise on the device.

Train: RandomResizedCrop, horizontal flip, colour jitter. JPEGs take a fast path
(`from_jpeg_bytes`: libjpeg-turbo through torchvision.io, then an antialiased crop-and-resize
and the jitter on the uint8 tensor); other files go through PIL (`__call__`).
Eval: resize the shorter side to image_size / crop_pct, then centre crop image_size.
Images stay uint8 until the batch reaches the device, where `normalize_batch` converts them and
`random_erasing` runs batched (both far cheaper there than per image in the data workers).
"""

from __future__ import annotations

import io
import math
import random
import warnings

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torchvision.transforms.v2 import functional as TF

try:  # deprecated in torchvision 0.29 (moving to TorchCodec): without it, PIL decodes JPEGs too
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - future torchvision
    decode_jpeg = None

INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
RGB = ImageReadMode.RGB if decode_jpeg is not None else None
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def random_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop covering `scale` of the area at aspect `ratio`
    (the RandomResizedCrop rule: 10 tries, then the largest centred crop within the ratios)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, width - w), random.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _draft(image: Image.Image, min_width: int, min_height: int) -> float:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 size when it stays >= the given size; returns the
    factor by which coordinates shrank (1.0 for other formats)."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L", "CMYK"):
        return 1.0
    full = image.size
    image.draft(image.mode, (max(min_width, 1), max(min_height, 1)))
    return image.size[0] / full[0]


class TrainTransform:
    """PIL image (opened lazily) -> (3, size, size) uint8: random resized crop, flip, jitter."""

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        color_jitter: float = 0.4,
        interpolation: str = "bicubic",
        fast_decode: bool = True,
    ) -> None:
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        self.hflip, self.jitter = hflip, color_jitter
        self.resample = INTERPOLATIONS[interpolation]
        # torchvision resizes tensors with all of these but lanczos (then PIL does it)
        self.tensor_mode = (
            None if interpolation == "lanczos" else TF.InterpolationMode(interpolation)
        )
        self.fast_decode = fast_decode  # ImageFolder uses from_jpeg_bytes for JPEGs when set

    def __call__(self, image: Image.Image) -> torch.Tensor:
        left, top, w, h = random_crop_box(*image.size, self.scale, self.ratio)
        image = image.convert("RGB")
        # resizing with a box resamples only the crop (no separate crop copy)
        image = image.resize(
            (self.size, self.size), self.resample, box=(left, top, left + w, top + h)
        )
        if random.random() < self.hflip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.jitter > 0:
            image = color_jitter(image, self.jitter)
        return to_uint8_tensor(image)

    def from_jpeg_bytes(self, data: bytes, source: str = "") -> torch.Tensor:
        """The same augmentation for an encoded JPEG, decoded by libjpeg-turbo (torchvision.io;
        grayscale and CMYK come out as RGB). Raises OSError for a corrupt or truncated file.
        `source` (the file) is for transforms that decode later and must name it then."""
        if self.tensor_mode is None or decode_jpeg is None:
            return self(Image.open(io.BytesIO(data)))
        try:
            with warnings.catch_warnings():  # the deprecation notice, on every call
                warnings.simplefilter("ignore", DeprecationWarning)
                image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=RGB)
        except RuntimeError as err:
            raise OSError(str(err).strip().splitlines()[-1]) from None
        height, width = image.shape[1:]
        (left, top, w, h), flip, ops, factors = self.draw(width, height)
        image = TF.resized_crop(
            image, top, left, h, w, [self.size, self.size], self.tensor_mode, antialias=True
        )
        if flip:
            image = image.flip(-1)
        if ops:
            image = jitter_batch(image[None], torch.tensor([ops]), torch.tensor([factors]))[0]
        return image.contiguous()

    def draw(
        self, width: int, height: int
    ) -> tuple[tuple[int, int, int, int], bool, list[int], list[float]]:
        """The JPEG path's random numbers for a width x height image, in the one order both
        this path and `device_decode` draw them: crop (left, top, w, h), flip, jitter ops and
        factors (`draw_jitter`; none without jitter)."""
        box = random_crop_box(width, height, self.scale, self.ratio)
        flip = random.random() < self.hflip
        ops, factors = draw_jitter(self.jitter) if self.jitter > 0 else ([], [])
        return box, flip, ops, factors


def color_jitter(image: Image.Image, strength: float) -> Image.Image:
    """Brightness, contrast and saturation each scaled by U(1 - s, 1 + s), in random order."""
    ops = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    random.shuffle(ops)
    for op in ops:
        image = op(image).enhance(random.uniform(max(0.0, 1 - strength), 1 + strength))
    return image


def draw_jitter(strength: float) -> tuple[list[int], list[float]]:
    """One image's colour jitter: the JITTER_OPS indices in random order and a U(1 - s, 1 + s)
    factor for each, drawn from `random` in that order."""
    ops = list(range(len(JITTER_OPS)))
    random.shuffle(ops)
    low, high = max(0.0, 1 - strength), 1 + strength
    return ops, [random.uniform(low, high) for _ in ops]


def jitter_batch(images: torch.Tensor, ops: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> jittered uint8: image n gets JITTER_OPS[ops[n, k]] with factor
    factors[n, k] for k = 0, 1, ... in turn (ops (N, S) int64, factors (N, S) float64).

    torchvision's brightness, contrast and saturation formulas (uint8 after each step), written
    for a factor per image so a batch is one call per step and op, on any device. Elementwise
    but for contrast's per-image mean, so an image comes out the same alone or in a batch (the
    data workers jitter one image, `device_decode` a whole batch)."""
    factors = factors.to(torch.float32)  # as torchvision, which multiplies float32 by the factor
    if len(images) == 1:  # the data workers' case: the ops in turn, nothing to select
        for step, op in enumerate(ops[0].tolist()):
            images = JITTER_OPS[op](images, factors[0, step].to(images.device))
        return images
    owned = False  # whether `images` is ours to write into (the caller's input is not)
    for step in range(ops.shape[1]):
        for op, adjust in enumerate(JITTER_OPS):
            chosen = (ops[:, step] == op).nonzero().flatten().tolist()
            if not chosen:
                continue
            factor = factors[chosen, step].to(images.device).view(-1, 1, 1, 1)
            if len(chosen) == len(images):  # every image takes this op now: no gather
                images, owned = adjust(images, factor), True
            else:
                images, owned = (images if owned else images.clone()), True
                images[chosen] = adjust(images[chosen], factor)
    return images


def _blend(image: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # other + factor * (image - other): one fused kernel, the weight a tensor (one per image)
    return torch.lerp(other, image.float(), factor).clamp_(0, 255).to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 1, H, W) float32 luma (ITU-R 601-2, torchvision's weights)."""
    red, green, blue = images.unbind(1)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).unsqueeze(1)


def _brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * factor).clamp_(0, 255).to(torch.uint8)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    grey = _grey(images).to(torch.uint8)  # the grey image, rounded down as an image
    mean = grey.mean(dim=(1, 2, 3), keepdim=True, dtype=torch.float32)  # (N, 1, 1, 1)
    # a blend towards one value per image: the image's pass alone carries the work
    return images.mul(factor).add_(mean * (1 - factor)).clamp_(0, 255).to(torch.uint8)


def _saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, _grey(images).floor_(), factor)


JITTER_OPS = (_brightness, _contrast, _saturation)  # color_jitter's order before the shuffle


class EvalTransform:
    """PIL image -> (3, size, size) uint8: shorter side to size / crop_pct, centre crop."""

    def __init__(
        self,
        size: int,
        crop_pct: float = 0.875,
        interpolation: str = "bicubic",
        fast_decode: bool = False,
    ) -> None:
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.size, self.crop_pct = size, crop_pct
        self.resample = INTERPOLATIONS[interpolation]
        # Off by default: evaluation numbers should not depend on the JPEG decoder's shortcut.
        self.fast_decode = fast_decode

    def __call__(self, image: Image.Image) -> torch.Tensor:
        short = math.floor(self.size / self.crop_pct)
        if self.fast_decode:
            scale = short / min(image.size)
            _draft(image, math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale))
        image = image.convert("RGB")
        width, height = image.size
        if width <= height:
            new = (short, max(1, round(height * short / width)))
        else:
            new = (max(1, round(width * short / height)), short)
        image = image.resize(new, self.resample)
        left = (new[0] - self.size) // 2
        top = (new[1] - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        return to_uint8_tensor(image)


def normalize_batch(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float32 (x / 255 - mean) / std, on the images' device."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1) * 255
    return (images.float() - mean_t) / std_t


def random_erasing(
    images: torch.Tensor,
    prob: float,
    scale: tuple[float, float] = (0.02, 1 / 3),
    ratio: tuple[float, float] = (0.3, 3.3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per image with probability `prob`, replace one random rectangle by N(0, 1) noise
    (timm's "pixel" mode, on normalised images). Modifies and returns `images` (N, C, H, W)."""
    n, c, height, width = images.shape
    if prob <= 0:
        return images
    draws = torch.rand(n, 5, generator=generator).tolist()
    for i, (p, s, r, y, x) in enumerate(draws):
        if p >= prob:
            continue
        area = height * width * (scale[0] + s * (scale[1] - scale[0]))
        aspect = math.exp(math.log(ratio[0]) + r * (math.log(ratio[1]) - math.log(ratio[0])))
        h = min(height, max(1, round(math.sqrt(area * aspect))))
        w = min(width, max(1, round(math.sqrt(area / aspect))))
        top = min(int(y * (height - h + 1)), height - h)
        left = min(int(x * (width - w + 1)), width - w)
        noise = torch.randn(c, h, w, generator=generator, device="cpu").to(images)
        images[i, :, top : top + h, left : left + w] = noise
    return images
