"""Restoration datasets: file pairs on disk, clean images degraded on the fly, and their mixture.

Every item is ``{"lq": C x H x W, "gt": C x H x W, "task": str, "name": str, "params": dict}`` with
values in [0, 1]. Item ``index`` at epoch ``e`` is a pure function of (seed, e, index), so a resumed
run sees exactly the data it would have seen; ``fixed=True`` (evaluation) pins the epoch to 0, making
the set a fixed benchmark.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from exda.data.io import load_image
from exda.data.transforms import PairTransform, item_generator
from exda.errors import UserError

Item = dict[str, Any]


@dataclass(frozen=True)
class ImagePair:
    """A degraded file and its clean target, with the task label and the name used in reports."""

    lq: Path
    gt: Path
    task: str
    name: str


@dataclass(frozen=True)
class CleanImage:
    """A clean image for on-the-fly degradation: a file, or pixels already in memory (sample photos)."""

    name: str
    path: Path | None = None
    pixels: np.ndarray | None = None

    def load(self) -> np.ndarray:
        return self.pixels if self.pixels is not None else load_image(self.path).pixels


class RestorationDataset(Dataset, ABC):
    """Seeding and length shared by every dataset; subclasses say how many items and how to make one.

    ``length`` sets the items per epoch: more than the natural count repeats them (each repeat with
    fresh randomness); fewer takes an evenly spaced subset, so a capped mixture still covers every task.
    """

    def __init__(self, *, seed: int = 0, fixed: bool = False, length: int | None = None) -> None:
        if seed < 0:
            raise UserError(f"seed must be >= 0, got {seed}")
        if length is not None and length < 1:
            raise UserError(f"length must be a positive number of items, got {length}")
        self.seed, self.fixed, self.length, self.epoch = seed, fixed, length, 0

    @abstractmethod
    def num_items(self) -> int:
        """Distinct items before ``length`` repeats or cuts them."""

    @abstractmethod
    def make_item(self, index: int, generator: torch.Generator) -> Item:
        """Item ``index`` (< num_items) using only ``generator`` for randomness."""

    def set_epoch(self, epoch: int) -> None:
        """Select the randomness of ``epoch`` (crops, flips, degradation parameters)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length if self.length is not None else self.num_items()

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        generator = item_generator(self.seed, 0 if self.fixed else self.epoch, index)
        natural = self.num_items()
        source = index % natural if len(self) >= natural else index * natural // len(self)
        return self.make_item(source, generator)


class PairedFileDataset(RestorationDataset):
    """Degraded/clean file pairs read from disk; ``params`` is empty."""

    def __init__(self, pairs: Sequence[ImagePair], transform: PairTransform, **options: Any) -> None:
        super().__init__(**options)
        if not pairs:
            raise UserError("no image pairs found")
        self.pairs, self.transform = list(pairs), transform

    def num_items(self) -> int:
        return len(self.pairs)

    def make_item(self, index: int, generator: torch.Generator) -> Item:
        pair = self.pairs[index]
        lq, gt = load_image(pair.lq).pixels, load_image(pair.gt).pixels
        if lq.shape[:2] != gt.shape[:2]:
            raise UserError(
                f"size mismatch: {pair.lq} is {lq.shape[0]}x{lq.shape[1]} but {pair.gt} is {gt.shape[0]}x{gt.shape[1]}"
            )
        lq_t, gt_t = self.transform([lq, gt], generator)
        return {"lq": lq_t, "gt": gt_t, "task": pair.task, "name": pair.name, "params": {}}


class SyntheticDataset(RestorationDataset):
    """Clean images degraded on the fly: item ``index`` is image ``index % n`` under degradation ``index // n``.

    The crop is taken before degrading (cheaper, and the degradation sees the training patch); the task
    label is the degradation name unless ``tasks`` gives one label per degradation.

    ``scene_colour`` > 0 (RGB only) tints half of the clean crops before they are degraded: each channel is
    scaled by exp(scene_colour * z_c) / max_c exp(scene_colour * z_c), z_c ~ N(0, 1), so a scene of one
    colour (green leaves, a sunset) is a clean target to keep, not a cast to remove. Without it a model
    trained on underwater pairs learns that every image short of red needs red added. A degradation that
    casts a colour itself (``casts_colour``: underwater) keeps its clean crops untinted
    (benchmarks/results/scene_colour_trial.md).
    """

    def __init__(
        self,
        images: Sequence[CleanImage],
        degradations: Sequence[str],
        transform: PairTransform,
        *,
        tasks: Sequence[str] | None = None,
        strength: float = 1.0,
        scene_colour: float = 0.0,
        **options: Any,
    ) -> None:
        from exda.degradations import get_degradation

        super().__init__(**options)
        if not images:
            raise UserError("no clean images to degrade")
        if not degradations:
            raise UserError("on-the-fly degradation needs at least one degradation name")
        if tasks is not None and len(tasks) != len(degradations):
            raise ValueError("tasks must give one label per degradation")
        if scene_colour < 0:
            raise UserError(f"scene_colour must be >= 0, got {scene_colour}")
        if scene_colour and transform.in_channels != 3:
            raise UserError("scene_colour tints RGB images: it needs in_channels 3")
        self.images, self.transform, self.strength = list(images), transform, strength
        self.scene_colour = scene_colour
        self.degradations = [get_degradation(name) for name in degradations]
        self.tasks = list(tasks) if tasks is not None else list(degradations)

    def num_items(self) -> int:
        return len(self.images) * len(self.degradations)

    def make_item(self, index: int, generator: torch.Generator) -> Item:
        which, image = divmod(index, len(self.images))
        degradation, task = self.degradations[which], self.tasks[which]
        (gt,) = self.transform([self.images[image].load()], generator)
        # drawn only when on, so that runs without it see the data they always saw
        if self.scene_colour and not degradation.casts_colour:
            gt = tint_scene(gt, self.scene_colour, generator)
        params = degradation.sample_params(gt[None], generator, self.strength)
        lq = degradation.apply(gt[None], **params)[0]
        return {"lq": lq, "gt": gt, "task": task, "name": f"{self.images[image].name}_{task}", "params": params}


class MixedDataset(RestorationDataset):
    """A concatenation of datasets (one per task) under one seed, epoch and length.

    A part's own ``length`` acts as its repeat factor; the mixture's generator decides the part's
    randomness, so the parts' seeds and epochs are not used.
    """

    def __init__(self, parts: Sequence[RestorationDataset], **options: Any) -> None:
        super().__init__(**options)
        if not parts:
            raise UserError("no datasets to mix")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])

    def num_items(self) -> int:
        return int(self.offsets[-1])

    def make_item(self, index: int, generator: torch.Generator) -> Item:
        which = int(np.searchsorted(self.offsets, index, side="right")) - 1
        part = self.parts[which]
        return part.make_item((index - int(self.offsets[which])) % part.num_items(), generator)


def tint_scene(image: torch.Tensor, spread: float, generator: torch.Generator) -> torch.Tensor:
    """With probability 1/2, ``image`` (3 x H x W in [0, 1]) with its channels scaled by gains in (0, 1],
    the largest exactly 1: exp(spread * z) / max exp(spread * z), z ~ N(0, 1) per channel."""
    draws = torch.randn(4, generator=generator)
    if draws[0] < 0:
        return image
    gains = torch.exp(spread * draws[1:])
    return image * (gains / gains.max()).view(3, 1, 1)


def collate_restoration(batch: list[Item]) -> dict[str, Any]:
    """Stack ``lq``/``gt`` into B x C x H x W; keep ``task``, ``name`` and ``params`` as lists."""
    shapes = {tuple(item["lq"].shape) for item in batch} | {tuple(item["gt"].shape) for item in batch}
    if len(shapes) != 1:
        raise UserError(f"images in one batch differ in size {sorted(shapes)}: set a patch size or use batch size 1")
    return {
        "lq": torch.stack([item["lq"] for item in batch]),
        "gt": torch.stack([item["gt"] for item in batch]),
        "task": [item["task"] for item in batch],
        "name": [item["name"] for item in batch],
        "params": [item["params"] for item in batch],
    }
