"""The paper's image transforms: PIL image in, uint8 tensor [3, R, R] out; `model_input` scales.

Training: resize to the square input resolution, Cutout (a random rectangle of `factor` times
each side, painted a random colour), RandAugment (timm's). Validation: resize only. A run's
`train.augment` block (`AugmentSettings`) may choose timm's own pipeline instead ("ResNet strikes
back"): `timm.data.create_transform`'s random-resized crop, flip and RandAugment for training,
its centre crop of `eval_crop_pct` for validation, both ending in uint8 (timm's prefetcher
output: no scaling, no normalisation). Every step
works on uint8 pixels, so loader workers ship bytes (a quarter of float32's to share and pin)
and `model_input` scales them to [0, 1] on the device, giving exactly the floats that scaling
in the worker gave. Mean/std normalisation, where a backbone's weights expect it, is the
model's own first step (mld.models).

The random choices use Python's, NumPy's and torch's global generators (timm's crop, flip and
RandAugment do), which the engine seeds per sample (see mld.data.sampling), so an epoch's
augmentations are a function of (seed, epoch).
"""
from __future__ import annotations

import dataclasses
import functools
import random
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw

RANDAUGMENT_CONFIG = "rand-m9-mstd0.5"  # timm's usual setting: 2 ops, magnitude 9 +- 0.5
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    """A run config's `train.augment` block as the transforms read it; left-out keys take the run
    config schema's defaults (the paper's transforms). `repeats` belongs to the sampler."""

    cutout: float = 0.5
    randaugment: bool | str = True  # true: RANDAUGMENT_CONFIG; or a timm RandAugment string
    crop: str = "resize"  # resize (the paper's square resize) | random_resized (timm's pipeline)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    hflip: float = 0.0
    interpolation: str = "bilinear"
    eval_crop_pct: float | None = None  # None: square resize; else timm's centre crop

    @classmethod
    def from_config(cls, augment: Mapping[str, Any] | None) -> "AugmentSettings":
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in (augment or {}).items() if key in names})

    @property
    def randaugment_config(self) -> str | None:
        """The timm RandAugment string, None without RandAugment."""
        if self.randaugment is True:
            return RANDAUGMENT_CONFIG
        return self.randaugment or None


class Cutout:
    """Paint a rectangle of `factor` x the image's sides, at a random centre, in a random colour."""

    def __init__(self, factor: float = 0.5) -> None:
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"cutout factor must be in (0, 1], got {factor}")
        self.factor = factor

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        half_width, half_height = int(self.factor * width + 0.5) // 2, int(self.factor * height + 0.5) // 2
        centre_x, centre_y = random.randrange(width), random.randrange(height)
        box = (max(centre_x - half_width, 0), max(centre_y - half_height, 0),
               min(centre_x + half_width, width), min(centre_y + half_height, height))
        fill = tuple(random.randrange(256) for _ in range(3))
        image = image.copy()
        ImageDraw.Draw(image).rectangle(box, fill=fill)
        return image


class Resize:
    """Resize to a square (bilinear unless told); a no-op when the image already has that size."""

    def __init__(self, resolution: int, interpolation: str = "bilinear") -> None:
        self.resolution = resolution
        self.interpolation = INTERPOLATIONS[interpolation]

    def __call__(self, image: Image.Image) -> Image.Image:
        if image.size == (self.resolution, self.resolution):
            return image
        return image.resize((self.resolution, self.resolution), self.interpolation)


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """HWC uint8 (PIL image or array) -> CHW uint8."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


PIXEL_MAX = 255.0


@functools.lru_cache(maxsize=None)
def _pixel_max(device: torch.device) -> torch.Tensor:
    """255 as a tensor on `device`: CUDA divides a tensor by a Python number as a product with its
    reciprocal, which misses the correctly rounded v / 255 for 126 of the 256 values; divided by a
    tensor, every device rounds the quotient itself, as NumPy did in the workers before."""
    return torch.tensor(PIXEL_MAX, dtype=torch.float32, device=device)


def model_input(inputs: torch.Tensor | list[torch.Tensor], device: torch.device
                ) -> torch.Tensor | list[torch.Tensor]:
    """A loaded batch on `device`, as the model takes it: uint8 images [B, 3, R, R] become float32
    in [0, 1] (channels_last on a GPU, as the model there); feature maps (cached features, a
    tensor or a list) move unchanged. The copy does not wait for the device (pinned batches)."""
    if isinstance(inputs, (list, tuple)):
        return [model_input(tensor, device) for tensor in inputs]
    inputs = inputs.to(device, non_blocking=True)
    if inputs.dtype != torch.uint8:
        return inputs
    if inputs.device.type == "cuda" and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)  # on bytes: the cheapest copy
    return inputs.float().div_(_pixel_max(inputs.device))  # float() keeps the memory format


def randaugment(resolution: int, config: str = RANDAUGMENT_CONFIG) -> Callable[[Image.Image], Image.Image]:
    """timm's RandAugment of `config` for the paper's pipeline (timm's own pipeline builds its own)."""
    from timm.data.auto_augment import rand_augment_transform  # timm is heavy: import on use

    # Translations scale with the image, as timm's own pipelines set them (0.45 x the side).
    hparams = {"translate_const": int(resolution * 0.45), "img_mean": (128, 128, 128)}
    return rand_augment_transform(config, hparams)


class ImageTransform:
    """Apply PIL steps in order, then make a uint8 tensor (a class, so workers can pickle it)."""

    def __init__(self, steps: list[Callable[[Image.Image], Image.Image]]) -> None:
        self.steps = steps

    def __call__(self, image: Image.Image) -> torch.Tensor:
        for step in self.steps:
            image = step(image)
        return to_tensor(image)


def build_transform(resolution: int, train: bool,
                    settings: AugmentSettings | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """The training (`train=True`) or validation transform at `resolution` px (the paper's unless
    `settings` say otherwise)."""
    settings = settings or AugmentSettings()
    if train and settings.crop == "random_resized":
        return _timm_transform(resolution, is_training=True, scale=settings.crop_scale, ratio=settings.crop_ratio,
                               hflip=settings.hflip, auto_augment=settings.randaugment_config,
                               interpolation=settings.interpolation)
    if not train and settings.eval_crop_pct is not None:
        return _timm_transform(resolution, is_training=False, crop_pct=settings.eval_crop_pct,
                               interpolation=settings.interpolation)
    steps: list[Callable[[Image.Image], Image.Image]] = [Resize(resolution, settings.interpolation)]
    if train and settings.cutout > 0:
        steps.append(Cutout(settings.cutout))
    if train and settings.randaugment_config:
        steps.append(randaugment(resolution, settings.randaugment_config))
    return ImageTransform(steps)


def _timm_transform(resolution: int, **options: Any) -> Callable[[Image.Image], torch.Tensor]:
    """timm.data.create_transform ending in uint8 CHW (its prefetcher output); no colour jitter (timm
    leaves it out beside RandAugment) and no random erasing, as "ResNet strikes back" A1/A2."""
    from timm.data import create_transform

    return create_transform(resolution, color_jitter=None, re_prob=0.0, use_prefetcher=True, **options)
