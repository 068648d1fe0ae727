"""Per-item preparation shared by every dataset: channel matching, paired crops, paired augmentation.

All randomness comes from a ``torch.Generator`` derived from (seed, epoch, index) by
:func:`item_generator`, so an item is a pure function of those three numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from exda.errors import UserError

BT601_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator whose stream depends only on (seed, epoch, index), well mixed by SeedSequence."""
    high, low = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(high) << 32) | int(low))


def randint(high: int, generator: torch.Generator) -> int:
    """A uniform integer in [0, high) drawn from ``generator``."""
    return int(torch.randint(high, (1,), generator=generator).item())


def match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Gray -> RGB by repeating, RGB -> gray by BT.601 luma; H x W x C float32 in and out."""
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    return (pixels @ BT601_LUMA)[:, :, None]


def centre_crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """H x W x C image centre-cropped so each side is a multiple of ``multiple`` (a side shorter than
    ``multiple`` is kept whole)."""
    height, width = image.shape[:2]
    rest_h = height % multiple if height >= multiple else 0
    rest_w = width % multiple if width >= multiple else 0
    return image[rest_h // 2 : height - rest_h + rest_h // 2, rest_w // 2 : width - rest_w + rest_w // 2]


@dataclass(frozen=True)
class PairTransform:
    """What every dataset does to its images: match channels, random paired crop, paired flips/rotations.

    Images smaller than ``patch_size`` are reflect-padded at the bottom/right before cropping.
    ``crop_multiple`` first centre-crops each side to a multiple of it (PromptIR / AdaIR test sets:
    ``crop_img(image, base=16)``, which drops the remainder split as floor(r / 2) top/left).
    """

    in_channels: int = 3
    patch_size: int | None = None
    augment: bool = False
    crop_multiple: int | None = None

    def __post_init__(self) -> None:
        if self.in_channels not in (1, 3):
            raise UserError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.patch_size is not None and self.patch_size < 1:
            raise UserError(f"patch_size must be a positive number of pixels, got {self.patch_size}")

    def __call__(self, images: Sequence[np.ndarray], generator: torch.Generator) -> list[torch.Tensor]:
        """Apply the same crop and augmentation to every H x W x C image; returns C x H x W tensors."""
        out = [match_channels(image, self.in_channels) for image in images]
        if self.crop_multiple is not None:
            out = [centre_crop_to_multiple(image, self.crop_multiple) for image in out]
        if self.patch_size is not None:
            out = self._crop(out, self.patch_size, generator)
        if self.augment:
            turns, flip = randint(4, generator), randint(2, generator)
            out = [np.rot90(image, turns, axes=(0, 1)) for image in out]
            out = [image[:, ::-1] for image in out] if flip else out
        # copy: inputs may be shared read-only arrays (cached sample photos)
        return [torch.from_numpy(image.transpose(2, 0, 1).copy()) for image in out]

    @staticmethod
    def _crop(images: list[np.ndarray], patch: int, generator: torch.Generator) -> list[np.ndarray]:
        height, width = images[0].shape[:2]
        pad_h, pad_w = max(patch - height, 0), max(patch - width, 0)
        if pad_h or pad_w:
            images = [np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect") for image in images]
            height, width = height + pad_h, width + pad_w
        top, left = randint(height - patch + 1, generator), randint(width - patch + 1, generator)
        return [image[top : top + patch, left : left + patch] for image in images]
